"""STORE (RFC 3501 §6.4.6, RFC 7162 UNCHANGEDSINCE), EXPUNGE and UID EXPUNGE (RFC 4315),
COPY (RFC 3501 §6.4.7, RFC 4315 COPYUID) and MOVE (RFC 6851)."""

from __future__ import annotations

from mailwarden.core.errors import NotFound
from mailwarden.imap.commands import SELECTED, command
from mailwarden.imap.fetch_render import render_flags
from mailwarden.imap.selected import Selected
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import parse_copy, parse_sequence_set
from mailwarden.imap.wire.encode import Code, status
from mailwarden.imap.wire.message_args import parse_store
from mailwarden.imap.wire.sequence import format_numbers
from mailwarden.imap.wire.tokens import ImapSyntaxError, Token


def _selected(s: ImapSession) -> Selected:
    assert s.selected is not None
    return s.selected


def _read_only() -> Done:
    return Done("NO", "Mailbox is read-only", Code("READ-ONLY"))


@command("STORE", frozenset({"selected"}), uid=True, allows_expunge=False)
async def store(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_store(args)
    sel = _selected(s)
    if sel.read_only:
        return _read_only()
    if req.unchangedsince is not None:
        s.enable_condstore()  # RFC 7162 §3.1.3
    indexes = sel.resolve(req.numbers, uid=uid)
    uids = [sel.uids[i] for i in indexes if sel.uids[i] not in sel.pending_expunge]
    result = await s.ctx.messages.store_flags(sel.id, uids, req.mode, req.flags, req.unchangedsince)
    sel.update(result.changed, result.highestmodseq)
    # §6.4.6: without .SILENT, the new flags of every message; RFC 7162 §3.1.3: with
    # CONDSTORE, the changed messages' MODSEQ even after .SILENT.
    if not req.silent:
        for meta in sorted(result.changed + result.unchanged, key=lambda m: m.uid):
            i = sel.index_of(meta.uid)
            if i is not None:
                modseq = sel.modseqs[i] if s.condstore else None
                shown = meta.uid if uid or s.qresync else None
                s.write(render_flags(i + 1, shown, sel.flags_of(i), modseq))
    elif s.condstore:
        for meta in result.changed:
            i = sel.index_of(meta.uid)
            if i is not None:
                shown_uid = b"UID %d " % meta.uid if uid or s.qresync else b""
                s.write(b"* %d FETCH (%sMODSEQ (%d))\r\n" % (i + 1, shown_uid, meta.modseq))
    if result.modified:
        positions = (sel.index_of(u) for u in result.modified)
        numbers = result.modified if uid else [i + 1 for i in positions if i is not None]
        code = Code("MODIFIED", format_numbers(numbers))
        return Done("OK", "Conditional STORE failed for some messages", code)
    return Done(text="STORE completed")


@command("EXPUNGE", SELECTED, uid=True)
async def expunge(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    sel = _selected(s)
    if sel.read_only:
        return _read_only()
    only: list[int] | None = None
    if uid:  # RFC 4315 §2.1: UID EXPUNGE sequence-set
        if len(args) != 1:
            raise ImapSyntaxError("UID EXPUNGE takes a UID set")
        only = [sel.uids[i] for i in sel.resolve(parse_sequence_set(args[0]), uid=True)]
    elif args:
        raise ImapSyntaxError("EXPUNGE takes no arguments")
    await s.ctx.messages.expunge(sel.id, only)
    return Done(text="EXPUNGE completed")


@command("COPY", SELECTED, uid=True)
async def copy(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    return await _transfer(s, args, uid, move=False)


@command("MOVE", SELECTED, uid=True)
async def move(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    return await _transfer(s, args, uid, move=True)


async def _transfer(s: ImapSession, args: list[Token], uid: bool, *, move: bool) -> Done:
    req = parse_copy(args)
    sel = _selected(s)
    if move and sel.read_only:
        return _read_only()
    assert s.user is not None
    name = s.mailbox_name(req.mailbox)
    try:
        target = await s.ctx.folders.get(s.user.id, name)
    except NotFound:  # RFC 3501 §6.4.7: the client may create it and try again
        return Done("NO", f"Mailbox {name} does not exist", Code("TRYCREATE"))
    indexes = sel.resolve(req.numbers, uid=uid)
    uids = [sel.uids[i] for i in indexes if sel.uids[i] not in sel.pending_expunge]
    verb = "MOVE" if move else "COPY"
    if not uids:
        return Done(text=f"{verb} completed, no messages")
    uidvalidity, pairs = await s.ctx.messages.copy(sel.id, uids, target.id, move=move)
    if not pairs:
        return Done(text=f"{verb} completed, no messages")
    code = Code(
        "COPYUID",
        uidvalidity,
        format_numbers([p[0] for p in pairs], sort=False),
        format_numbers([p[1] for p in pairs], sort=False),
    )
    if move:  # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs
        s.write(status(None, "OK", "Moved", code))
        return Done(text="MOVE completed")
    return Done("OK", "COPY completed", code)
