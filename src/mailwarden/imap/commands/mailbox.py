"""SELECT, EXAMINE (RFC 3501 §6.3.1-2, RFC 7162 CONDSTORE/QRESYNC), CLOSE and UNSELECT
(RFC 3501 §6.4.2, RFC 3691)."""

from __future__ import annotations

from mailwarden.imap.commands import AUTHED, SELECTED, command
from mailwarden.imap.fetch_render import render_flags
from mailwarden.imap.selected import Selected
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import QResync, parse_select
from mailwarden.imap.wire.encode import Code, encode_list, status, untagged
from mailwarden.imap.wire.sequence import format_numbers
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, Token

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


@command("SELECT", AUTHED)
async def select(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    return await _open(s, args, read_only=False)


@command("EXAMINE", AUTHED)
async def examine(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    return await _open(s, args, read_only=True)


async def _open(s: ImapSession, args: list[Token], *, read_only: bool) -> Done:
    req = parse_select(args)
    if req.qresync is not None and not s.qresync:
        raise ImapSyntaxError("QRESYNC must be enabled first")  # RFC 7162 §3.2.5
    name = s.mailbox_name(req.mailbox)
    assert s.user is not None
    if s.selected is not None:
        s.deselect()
        if s.qresync:  # RFC 7162 §3.2.11: the old mailbox is closed
            s.write(status(None, "OK", "Previous mailbox closed", Code("CLOSED")))
    record = await s.ctx.folders.get(s.user.id, name)
    if req.condstore:
        s.enable_condstore()  # RFC 7162 §3.1.8
    watch = s.ctx.notifier.watch(record.id)
    view = await s.ctx.messages.open(record.id, read_only=read_only)
    sel = Selected(view, read_only=read_only, watch=watch)
    s.select(sel)
    _announce(s, sel)
    if req.qresync is not None:
        await _resync(s, sel, req.qresync)
    code = Code("READ-ONLY" if read_only else "READ-WRITE")
    return Done("OK", f"{'EXAMINE' if read_only else 'SELECT'} completed", code)


def _announce(s: ImapSession, sel: Selected) -> None:
    """The untagged data of a successful SELECT (RFC 3501 §6.3.1, RFC 7162 §3.1.2.1)."""
    flags = [Atom(f) for f in (*SYSTEM_FLAGS, *sel.keywords())]
    s.write(untagged(b"FLAGS", encode_list(flags)))
    permanent = [] if sel.read_only else [*flags, Atom("\\*")]
    s.write(
        status(None, "OK", "Flags permitted", Code("PERMANENTFLAGS", [a.value for a in permanent]))
    )
    s.write(untagged(b"%d" % sel.count, b"EXISTS"))
    s.write(untagged(b"%d" % len(sel.recent), b"RECENT"))
    unseen = sel.first_unseen()
    if unseen is not None:
        s.write(status(None, "OK", "First unseen", Code("UNSEEN", unseen)))
    s.write(status(None, "OK", "UIDs valid", Code("UIDVALIDITY", sel.mailbox.uidvalidity)))
    s.write(status(None, "OK", "Predicted next UID", Code("UIDNEXT", sel.uidnext)))
    s.write(status(None, "OK", "Highest", Code("HIGHESTMODSEQ", sel.modseq)))


async def _resync(s: ImapSession, sel: Selected, q: QResync) -> None:
    """RFC 7162 §3.2.5.2: tell a returning client what it missed since its mod-sequence."""
    if q.uidvalidity != sel.mailbox.uidvalidity:
        return  # the client's cache is stale: it must resynchronise from scratch
    known = q.known_uids.resolve(sel.uids[-1] if sel.uids else 0) if q.known_uids else None
    gone = await s.ctx.messages.vanished(sel.id, q.modseq)
    if known is not None:
        gone = [u for u in gone if u in known]
    if gone:
        s.write(untagged(b"VANISHED", b"(EARLIER)", format_numbers(gone).encode("ascii")))
    for i, uid_ in enumerate(sel.uids):
        if sel.modseqs[i] > q.modseq and (known is None or uid_ in known):
            s.write(render_flags(i + 1, uid_, sel.flags_of(i), sel.modseqs[i]))


@command("CLOSE", SELECTED)
async def close(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 3501 §6.4.2: silently expunge \Deleted messages (unless read-only), deselect.
    if args:
        raise ImapSyntaxError("CLOSE takes no arguments")
    sel = s.selected
    assert sel is not None
    s.deselect()
    if not sel.read_only:
        await s.ctx.messages.expunge(sel.id)
    return Done(text="CLOSE completed")


@command("UNSELECT", SELECTED)
async def unselect(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 3691: deselect without expunging.
    if args:
        raise ImapSyntaxError("UNSELECT takes no arguments")
    s.deselect()
    return Done(text="UNSELECT completed")
