"""SEARCH (RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162 MODSEQ),
SORT and THREAD (RFC 5256). Text keys are answered by the search index, never by
reading message files (``services/search_index.py``)."""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Sequence
from typing import Literal

from mailwarden.imap.commands import SELECTED, command
from mailwarden.imap.search_eval import MessageFields, evaluate, result_numbers, result_uids
from mailwarden.imap.searchtext import header_values
from mailwarden.imap.selected import Selected
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.threading import (
    SortInput,
    ThreadInput,
    format_threads,
    sent_date,
    sort_messages,
    thread_orderedsubject,
    thread_references,
)
from mailwarden.imap.wire.encode import encode_string, untagged
from mailwarden.imap.wire.search import And, ModSeqKey, Not, Or, SearchKey, parse_search
from mailwarden.imap.wire.sequence import format_numbers
from mailwarden.imap.wire.sort import parse_sort, parse_thread
from mailwarden.imap.wire.tokens import ImapSyntaxError, Token
from mailwarden.store.messages_sql import SortRow

_MSG_ID = re.compile(r"<[^<>\s]+>")


class SessionSource:
    """The evaluator's view of the selected mailbox (imap/search_eval.SearchSource)."""

    def __init__(self, s: ImapSession, sel: Selected) -> None:
        self._s = s
        self._sel = sel
        self.uids = sel.uids
        self.modseqs = sel.modseqs
        self.saved = sel.saved
        self._rows: list[SortRow] | None = None

    @functools.cached_property
    def flags(self) -> list[tuple[str, ...]]:
        """Flags with \\Recent, built only when a flag key asks for them."""
        return [self._sel.flags_of(i) for i in range(self._sel.count)]

    async def text_uids(
        self, field: str | None, needle: str, where: Literal["headers", "body"]
    ) -> set[int]:
        sel = self._sel
        hits = await self._s.ctx.messages.text_uids(sel.id, needle, where, sel.modseq)
        if field is None:
            return {uid for uid, _ in hits}
        folded = needle.casefold()
        return {
            uid
            for uid, headers in hits
            if any(folded in v.casefold() for v in header_values(headers, field))
        }

    async def rows(self) -> list[SortRow]:
        if self._rows is None:
            self._rows = await self._s.ctx.messages.sort_rows(self._sel.id)
        return self._rows

    async def fields(self) -> Sequence[MessageFields]:
        by_uid = {r.uid: r for r in await self.rows()}
        out = []
        for uid in self.uids:  # messages expunged meanwhile match no date or size key
            r = by_uid.get(uid)
            if r is not None:
                out.append(MessageFields(uid, r.size, r.internal_date, r.date))
        return out


def _uses_modseq(key: SearchKey) -> bool:
    """Does the query contain a MODSEQ key (RFC 7162 §3.1.5)?"""
    todo: list[SearchKey] = [key]
    while todo:
        k = todo.pop()
        if isinstance(k, ModSeqKey):
            return True
        if isinstance(k, And):
            todo += k.keys
        elif isinstance(k, Or):
            todo += [k.left, k.right]
        elif isinstance(k, Not):
            todo.append(k.key)
    return False


@command("SEARCH", SELECTED, uid=True, allows_expunge=False)
async def search(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_search(args)
    sel = s.selected
    assert sel is not None
    modseq = _uses_modseq(req.query)
    if modseq:
        s.enable_condstore()  # RFC 7162 §3.1.5
    if req.returns is not None and "SAVE" in req.returns:
        sel.saved = []  # RFC 5182 §2.1: a failed SEARCH leaves an empty saved result
    found = await evaluate(req.query, SessionSource(s, sel), req.charset)
    uids = result_uids(found, sel.uids)
    numbers = uids if uid else result_numbers(found)
    top = max((sel.modseqs[i] for i in found), default=0) if modseq else 0
    if req.returns is None:
        tail = b" (MODSEQ %d)" % top if top else b""
        s.write(untagged(b"SEARCH", *(b"%d" % n for n in numbers)).rstrip(b"\r\n") + tail + b"\r\n")
        return Done(text="SEARCH completed")
    if "SAVE" in req.returns:
        sel.saved = uids
        if req.returns == {"SAVE"}:
            return Done(text="SEARCH completed, result saved")
    s.write(_esearch(tag, uid, numbers, req.returns, top))
    return Done(text="SEARCH completed")


def _esearch(tag: str, uid: bool, numbers: list[int], returns: frozenset[str], top: int) -> bytes:
    """RFC 4731 §3.1 ``* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 4 ALL 2,4:5,9``."""
    parts = [b"(TAG " + encode_string(tag) + b")"]
    if uid:
        parts.append(b"UID")
    if numbers and "MIN" in returns:
        parts.append(b"MIN %d" % min(numbers))
    if numbers and "MAX" in returns:
        parts.append(b"MAX %d" % max(numbers))
    if "COUNT" in returns:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in returns:
        parts.append(b"ALL " + format_numbers(numbers).encode("ascii"))
    if top and numbers:
        parts.append(b"MODSEQ %d" % top)  # RFC 7162 §3.1.5
    return untagged(b"ESEARCH", *parts)


async def _matching_rows(
    s: ImapSession, sel: Selected, query: SearchKey, charset: str | None
) -> list[tuple[int, SortRow]]:
    """(index, row) of the messages matching ``query``, for SORT and THREAD; the rows are
    read once, whether or not the query itself needed them."""
    source = SessionSource(s, sel)
    found = await evaluate(query, source, charset)
    by_uid = {r.uid: r for r in await source.rows()}
    return [(i, by_uid[sel.uids[i]]) for i in found if sel.uids[i] in by_uid]


def _first_mailbox(value: str) -> str:
    """RFC 5256 §3: the addr-mailbox (local part) of the first address."""
    pairs = email.utils.getaddresses([value])
    addr = pairs[0][1] if pairs else ""
    return addr.rsplit("@", 1)[0] if "@" in addr else addr


@command("SORT", SELECTED, uid=True, allows_expunge=False)
async def sort(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_sort(args)
    if req.returns is not None:
        raise ImapSyntaxError("ESORT is not supported")
    criteria = [(c.key, c.reverse) for c in req.criteria]
    if any(k.startswith("DISPLAY") for k, _ in criteria):
        raise ImapSyntaxError("SORT=DISPLAY is not supported")
    sel = s.selected
    assert sel is not None
    inputs = [
        SortInput(
            seq=i + 1,
            internal_date=r.internal_date,
            date=r.date,
            subject=r.subject,
            from_mailbox=_first_mailbox(r.from_addr),
            to_mailbox=_first_mailbox(r.to_addr),
            cc_mailbox=_first_mailbox(r.cc_addr),
            size=r.size,
            uid=r.uid,
        )
        for i, r in await _matching_rows(s, sel, req.query, req.charset)
    ]
    ordered = sort_messages(inputs, criteria, uid=uid)
    s.write(untagged(b"SORT", *(b"%d" % n for n in ordered)))
    return Done(text="SORT completed")


@command("THREAD", SELECTED, uid=True, allows_expunge=False)
async def thread(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_thread(args)
    sel = s.selected
    assert sel is not None
    rows = await _matching_rows(s, sel, req.query, req.charset)
    refs: dict[int, tuple[str, ...]] = {}
    if req.algorithm == "REFERENCES":
        headers = dict(await s.ctx.messages.text_uids(sel.id, "", "headers", sel.modseq))
        for _, r in rows:
            text = " ".join(header_values(headers.get(r.uid, ""), "References"))
            refs[r.uid] = tuple(_MSG_ID.findall(text))
    inputs = [
        ThreadInput(
            number=r.uid if uid else i + 1,
            sent_date=sent_date(r.date, r.internal_date),
            subject=r.subject,
            message_id=_one_id(r.message_id),
            in_reply_to=_one_id(r.in_reply_to),
            references=refs.get(r.uid, ()),
        )
        for i, r in rows
    ]
    algorithm = thread_references if req.algorithm == "REFERENCES" else thread_orderedsubject
    body = format_threads(algorithm(inputs))
    s.write(untagged(b"THREAD", body) if body else untagged(b"THREAD"))
    return Done(text="THREAD completed")


def _one_id(value: str) -> str | None:
    m = _MSG_ID.search(value)
    return m.group() if m else None
