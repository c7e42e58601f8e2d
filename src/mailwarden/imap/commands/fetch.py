"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 7162 CHANGEDSINCE/VANISHED; RFC 3516).

Metadata-only requests (FLAGS, UID, RFC822.SIZE, MODSEQ) are answered from the
session's view without touching the store. Requests that need message bytes read the
bodies in batches (one worker-thread hop per batch) and write each response as it is
rendered, waiting for the socket every few hundred KB, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from mailwarden.imap.commands import SELECTED, command
from mailwarden.imap.fetch_render import FetchMessage, needs_body, render_fetch, render_meta
from mailwarden.imap.selected import Selected
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import parse_sequence_set
from mailwarden.imap.wire.encode import untagged
from mailwarden.imap.wire.fetch import Attr, FetchRequest, parse_fetch
from mailwarden.imap.wire.sequence import SequenceSet, format_numbers
from mailwarden.imap.wire.tokens import ImapSyntaxError, Token
from mailwarden.store.records import BodyRef

BATCH = 256  # messages read per worker-thread hop
BATCH_BYTES = 4 * 1024 * 1024  # ... and at most this many bytes of them
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # INTERNALDATE is never rendered from this


@command("FETCH", SELECTED, uid=True, allows_expunge=False)
async def fetch(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if len(args) < 2:
        raise ImapSyntaxError("FETCH needs a sequence set and attributes")
    numbers = parse_sequence_set(args[0])
    req = parse_fetch(args[1:])
    sel = s.selected
    assert sel is not None
    if req.vanished and not uid:
        raise ImapSyntaxError("VANISHED is only valid with UID FETCH")  # RFC 7162 §3.2.6
    if req.vanished and not s.qresync:
        raise ImapSyntaxError("VANISHED needs QRESYNC enabled")
    if req.wants_modseq:
        s.enable_condstore()  # RFC 7162 §3.1.4
    indexes = sel.resolve(numbers, uid=uid)
    if req.changedsince is not None:
        indexes = [i for i in indexes if sel.modseqs[i] > req.changedsince]
        if req.vanished:
            await _vanished(s, sel, numbers, req.changedsince)
    indexes = [i for i in indexes if sel.uids[i] not in sel.pending_expunge]
    seen_added = await _mark_seen(s, sel, indexes, req)
    if needs_body(req) or Attr.INTERNALDATE in req.items:
        await _with_rows(s, sel, indexes, req, uid, seen_added)
    else:
        _from_view(s, sel, indexes, req, uid, seen_added)
    return Done(text="FETCH completed")


async def _vanished(s: ImapSession, sel: Selected, numbers: SequenceSet, since: int) -> None:
    """RFC 7162 §3.2.6: UIDs in the set expunged after ``since``."""
    gone = await s.ctx.messages.vanished(sel.id, since)
    largest = max(sel.uids[-1] if sel.uids else 0, max(gone, default=0))
    wanted = numbers.resolve(largest)
    gone = [u for u in gone if u in wanted]
    if gone:
        s.write(untagged(b"VANISHED", b"(EARLIER)", format_numbers(gone).encode("ascii")))


async def _mark_seen(
    s: ImapSession, sel: Selected, indexes: list[int], req: FetchRequest
) -> set[int]:
    """§6.4.5: BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \\Seen; returns the UIDs."""
    if not req.sets_seen or sel.read_only:
        return set()
    todo = [sel.uids[i] for i in indexes if not any(f.lower() == "\\seen" for f in sel.flags[i])]
    if not todo:
        return set()
    result = await s.ctx.messages.store_flags(sel.id, todo, "add", ["\\Seen"])
    sel.update(result.changed, result.highestmodseq)
    return {m.uid for m in result.changed}


def _message(sel: Selected, i: int, ref: BodyRef | None, raw: bytes | None) -> FetchMessage:
    return FetchMessage(
        seq=i + 1,
        uid=sel.uids[i],
        flags=sel.flags_of(i),
        modseq=sel.modseqs[i],
        size=sel.sizes[i],
        internal_date=ref.internal_date if ref is not None else _EPOCH,
        raw=raw,
    )


def _from_view(
    s: ImapSession, sel: Selected, indexes: list[int], req: FetchRequest, uid: bool, seen: set[int]
) -> None:
    """Metadata only: every value is in the view (render_meta builds all lines at once)."""
    flags = sel.flags
    shown = [sel.flags_of(i) for i in indexes] if sel.recent else [flags[i] for i in indexes]
    uids, modseqs, sizes = sel.uids, sel.modseqs, sel.sizes
    lines = render_meta(
        req,
        uid=uid,
        seqs=[i + 1 for i in indexes],
        uids=[uids[i] for i in indexes],
        flags=shown,
        modseqs=[modseqs[i] for i in indexes],
        sizes=[sizes[i] for i in indexes],
    )
    s.write(b"".join(lines))


def _batches(sel: Selected, indexes: list[int]) -> list[list[int]]:
    """Consecutive groups of at most BATCH messages and BATCH_BYTES (one huge message
    alone), so a FETCH of big messages never holds more than a few MB at once."""
    out: list[list[int]] = []
    part: list[int] = []
    size = 0
    for i in indexes:
        if part and (len(part) >= BATCH or size + sel.sizes[i] > BATCH_BYTES):
            out.append(part)
            part, size = [], 0
        part.append(i)
        size += sel.sizes[i]
    if part:
        out.append(part)
    return out


async def _load(
    s: ImapSession, sel: Selected, part: list[int], body: bool
) -> list[tuple[int, BodyRef, bytes | None]]:
    """Rows (and bytes, when needed) of one batch; messages expunged meanwhile drop out."""
    refs = {r.uid: r for r in await s.ctx.messages.bodies(sel.id, [sel.uids[i] for i in part])}
    present = [i for i in part if sel.uids[i] in refs]
    raws: list[bytes | None] = [None] * len(present)
    if body:
        raws = list(await s.ctx.messages.read_many([refs[sel.uids[i]].blob for i in present]))
    return [(i, refs[sel.uids[i]], raw) for i, raw in zip(present, raws, strict=True)]


async def _with_rows(
    s: ImapSession, sel: Selected, indexes: list[int], req: FetchRequest, uid: bool, seen: set[int]
) -> None:
    body = needs_body(req)
    batches = _batches(sel, indexes)
    ahead: asyncio.Task[list[tuple[int, BodyRef, bytes | None]]] | None = None
    if batches:
        ahead = asyncio.ensure_future(_load(s, sel, batches[0], body))
    try:
        for n in range(len(batches)):
            assert ahead is not None
            loaded = await ahead
            # read the next batch while this one is rendered and sent
            ahead = (
                asyncio.ensure_future(_load(s, sel, batches[n + 1], body))
                if n + 1 < len(batches)
                else None
            )
            for i, ref, raw in loaded:
                msg = _message(sel, i, ref, raw)
                s.write(render_fetch(msg, req, uid=uid, seen_added=msg.uid in seen))
                await s.maybe_flush()
    finally:
        if ahead is not None:  # the command failed or the client went away
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
