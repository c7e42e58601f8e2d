"""Evaluating a SEARCH query over one mailbox (RFC 3501 §6.4.4, RFC 5182, RFC 7162 §3.1.5).

The query is the AST of :mod:`mailwarden.imap.wire.search`; the mailbox is a
:class:`SearchSource`: UIDs, flags and mod-sequences in memory, text matches and dates /
sizes on request. The result is the 0-based indexes of the matching messages::

    indexes = await evaluate(request.query, source, request.charset)
    result_uids(indexes, source.uids)   # UID SEARCH, SEARCHRES SAVE
    result_numbers(indexes)             # SEARCH: message sequence numbers

Every key is a set of indexes: ``And`` intersects (cheapest keys first, stopping as soon as
nothing is left, so a text query is not even sent then), ``Or`` unites and ``Not``
complements over all messages. Text keys cost O(matches): the source returns matching
UIDs, mapped to indexes by binary search. Flag, mod-sequence, date and size keys take one
pass over the mailbox each. No I/O of its own, no clock.

Charsets: ``CHARSET`` absent, US-ASCII or UTF-8 decode search strings as UTF-8 (invalid
bytes become U+FFFD). Any other charset that is a mail charset Python knows (ISO-8859-x,
windows-125x, KOI8-R, Shift_JIS, GB2312, ... see
:func:`mailwarden.imap.searchtext.lookup_charset`) is accepted too; unknown ones raise
:class:`BadCharset`. Only :data:`SUPPORTED_CHARSETS` are advertised in ``BADCHARSET``.

Dates (§6.4.4 "disregarding time and timezone"): a datetime's calendar date in its own
timezone is compared with the search day. INTERNALDATE keeps the zone it was stored
with; the Date: header arrives normalised to UTC, so SENT* keys compare its UTC date.
A message without a valid Date: header uses its INTERNALDATE as sent date, as RFC 5256
§2.2 does for SORT, so SENT* searches agree with SORT DATE.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime
from itertools import compress
from typing import Literal, Protocol

from mailwarden.imap.searchtext import lookup_charset
from mailwarden.imap.wire.search import (
    All,
    And,
    BodyKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
)

__all__ = [
    "SUPPORTED_CHARSETS",
    "BadCharset",
    "MessageFields",
    "SearchSource",
    "evaluate",
    "result_numbers",
    "result_uids",
    "search_codec",
]

SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")  # advertised in NO [BADCHARSET (...)]

Ids = AbstractSet[int]  # 0-based indexes into SearchSource.uids


class BadCharset(Exception):
    """An unknown CHARSET: the session answers ``NO [BADCHARSET (US-ASCII UTF-8)]``
    (RFC 3501 §6.4.4 and §7.1)."""

    def __init__(self, charset: str) -> None:
        super().__init__(f"unsupported charset {charset[:40]}")
        self.charset = charset


@dataclass(frozen=True, slots=True)
class MessageFields:
    """What the date and size keys need, one per message."""

    uid: int
    size: int  # RFC822.SIZE
    internal_date: datetime  # aware
    date: datetime | None  # the Date: header, aware, None if missing or invalid


class SearchSource(Protocol):
    """What the evaluator asks of the mailbox; the session/service implements it.

    ``uids`` is ascending (message sequence number n is ``uids[n-1]``); ``flags`` (with
    ``\\Recent`` where recent) and ``modseqs`` are parallel to it. ``saved`` is RFC 5182's
    ``$`` as ascending UIDs, None if nothing was saved.
    """

    @property
    def uids(self) -> Sequence[int]: ...

    @property
    def flags(self) -> Sequence[tuple[str, ...]]: ...

    @property
    def modseqs(self) -> Sequence[int]: ...

    @property
    def saved(self) -> Sequence[int] | None: ...

    async def text_uids(
        self, field: str | None, needle: str, where: Literal["headers", "body"]
    ) -> Iterable[int]:
        """UIDs whose header field ``field`` (None: any header) / body contains ``needle``,
        case-insensitively.

        ``needle`` may be empty: ``text_uids(name, "", "headers")`` must return the
        messages that have a field ``name`` at all (RFC 3501 §6.4.4 HEADER with an empty
        string). UIDs not in :attr:`uids` are ignored.
        """
        ...

    async def fields(self) -> Sequence[MessageFields]:
        """Dates and sizes of every message, best in :attr:`uids` order (called at most once
        per search, and only if a date or size key needs them)."""
        ...


def search_codec(charset: str | None) -> str:
    """The Python codec for a SEARCH ``CHARSET``; raises :class:`BadCharset` if unknown."""
    if charset is None:
        return "utf-8"
    codec = lookup_charset(charset)
    if codec is None:
        raise BadCharset(charset)
    return "utf-8" if codec == "ascii" else codec  # US-ASCII: 8-bit bytes read as UTF-8


def _needle(value: bytes, codec: str) -> str:
    """A search string as text; NUL becomes U+FFFD, as in the index (PostgreSQL text)."""
    try:
        text = value.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError, TypeError):
        text = value.decode("utf-8", "replace")
    return text.replace("\0", "\ufffd")


def _cost(key: SearchKey) -> int:
    """Evaluation order inside ``And``: in-memory keys, then dates/sizes, then queries."""
    if isinstance(key, All | FlagKey | SetKey | ModSeqKey):
        return 0
    if isinstance(key, DateKey | SizeKey):
        return 1
    if isinstance(key, HeaderKey | BodyKey):
        return 2
    return 3


def _day(m: MessageFields, sent: bool) -> date:
    # §6.4.4: dates disregard time and timezone: the calendar date in the value's own zone.
    if sent and m.date is not None:
        return m.date.date()
    return m.internal_date.date()  # RFC 5256 §2.2: no valid Date: -> INTERNALDATE


class _Evaluator:
    """One search: the source, the search-string codec and per-search caches.

    :meth:`run` recurses over the AST; its depth is bounded by the parser's
    ``MAX_SEARCH_DEPTH``.
    """

    __slots__ = ("_fields", "_universe", "codec", "n", "source", "uids")

    def __init__(self, source: SearchSource, codec: str) -> None:
        self.source = source
        self.codec = codec
        self.uids = source.uids
        self.n = len(self.uids)
        self._universe: frozenset[int] | None = None
        self._fields: list[tuple[int, MessageFields]] | None = None

    @property
    def universe(self) -> frozenset[int]:
        if self._universe is None:
            self._universe = frozenset(range(self.n))
        return self._universe

    def indexes_of(self, uids: Iterable[int]) -> set[int]:
        """Indexes of the given UIDs (binary search: O(k log n)); unknown UIDs dropped."""
        out = set()
        all_uids, n = self.uids, self.n
        for uid in uids:
            i = bisect_left(all_uids, uid)
            if i < n and all_uids[i] == uid:
                out.add(i)
        return out

    async def run(self, key: SearchKey) -> Ids:
        if isinstance(key, And):
            return await self._and(key.keys)
        if isinstance(key, Or):  # §6.4.4 OR: either key matches
            left = await self.run(key.left)
            if len(left) == self.n:
                return left
            return left | await self.run(key.right)
        if isinstance(key, Not):  # §6.4.4 NOT: the key does not match
            if isinstance(key.key, FlagKey):  # NOT SEEN: one pass, no complement
                return self._flag(key.key.flag, not key.key.present)
            return self.universe - await self.run(key.key)
        if isinstance(key, HeaderKey | BodyKey):
            return await self._text(key)
        if isinstance(key, DateKey | SizeKey):
            return await self._dated(key)
        return self._in_memory(key)

    async def _and(self, keys: Sequence[SearchKey]) -> Ids:
        # §6.4.4: all keys must match. Cheap keys first; stop when nothing is left.
        result: Ids | None = None
        for key in sorted(keys, key=_cost):
            ids = await self.run(key)
            result = ids if result is None else result & ids
            if not result:
                break
        return self.universe if result is None else result

    def _in_memory(self, key: All | FlagKey | SetKey | ModSeqKey) -> Ids:
        if isinstance(key, All):
            return self.universe
        if isinstance(key, FlagKey):
            return self._flag(key.flag, key.present)
        if isinstance(key, ModSeqKey):
            # RFC 7162 §3.1.5: mod-sequence >= n; one mod-sequence per message, so the
            # entry name and type are accepted and ignored.
            floor = key.modseq
            return {i for i, m in enumerate(self.source.modseqs) if m >= floor}
        return self._set(key)

    def _flag(self, flag: str, present: bool) -> Ids:
        """Messages with (``present``) or without ``flag``, compared case-insensitively."""
        want = flag.lower()
        flags = self.source.flags
        # one test per distinct flag combination, then a C-level pass over the mailbox
        memo = {f: any(x.lower() == want for x in f) == present for f in set(flags)}
        return set(compress(range(self.n), map(memo.__getitem__, flags)))

    def _set(self, key: SetKey) -> Ids:
        if key.numbers.saved:
            # RFC 5182 §2.1: "$" is the saved result (UIDs), in SEARCH and in UID SEARCH;
            # nothing saved is the empty set.
            return self.indexes_of(self.source.saved or ())
        if key.uid:
            # §6.4.4 UID: "*" is the highest UID; UIDs not in the mailbox match nothing.
            largest = self.uids[-1] if self.uids else 0
            return set(key.numbers.resolve(largest).indexes(self.uids))
        # §6.4.4 sequence set: "*" is the message count; larger numbers match nothing.
        return set(key.numbers.resolve(self.n).indexes(range(1, self.n + 1)))

    async def _text(self, key: HeaderKey | BodyKey) -> Ids:
        needle = _needle(key.value, self.codec)
        if isinstance(key, HeaderKey):
            # §6.4.4 HEADER: an empty string matches every message that has the field.
            return self.indexes_of(await self.source.text_uids(key.name, needle, "headers"))
        if not needle:  # every body / text contains the empty string
            return self.universe
        found = self.indexes_of(await self.source.text_uids(None, needle, "body"))
        if key.text:  # §6.4.4 TEXT: header or body
            found |= self.indexes_of(await self.source.text_uids(None, needle, "headers"))
        return found

    async def _dated(self, key: DateKey | SizeKey) -> Ids:
        rows = await self._message_fields()
        if isinstance(key, SizeKey):
            size = key.size
            if key.op == "larger":  # §6.4.4 LARGER: RFC822.SIZE > n
                return {i for i, m in rows if m.size > size}
            return {i for i, m in rows if m.size < size}  # SMALLER: < n
        day, sent = key.day, key.sent
        if key.op == "before":  # §6.4.4 BEFORE / SENTBEFORE: earlier than the day
            return {i for i, m in rows if _day(m, sent) < day}
        if key.op == "on":  # ON / SENTON: within the day
            return {i for i, m in rows if _day(m, sent) == day}
        return {i for i, m in rows if _day(m, sent) >= day}  # SINCE: within or later

    async def _message_fields(self) -> list[tuple[int, MessageFields]]:
        """(index, fields) per message: fetched once per search, matched by UID."""
        if self._fields is None:
            rows = await self.source.fields()
            uids, n = self.uids, self.n
            pairs = []
            for pos, row in enumerate(rows):
                if pos < n and uids[pos] == row.uid:
                    pairs.append((pos, row))
                else:
                    pairs.extend((i, row) for i in self.indexes_of((row.uid,)))
            self._fields = pairs
        return self._fields


async def evaluate(query: SearchKey, source: SearchSource, charset: str | None = None) -> list[int]:
    """0-based indexes into ``source.uids`` of the messages matching ``query``, ascending.

    Raises :class:`BadCharset` for an unknown ``charset`` before anything is evaluated.
    """
    evaluator = _Evaluator(source, search_codec(charset))
    return sorted(await evaluator.run(query))


def result_uids(indexes: Iterable[int], uids: Sequence[int]) -> list[int]:
    """The UIDs of :func:`evaluate`'s indexes (UID SEARCH, RFC 5182 SAVE)."""
    return [uids[i] for i in indexes]


def result_numbers(indexes: Iterable[int]) -> list[int]:
    """The message sequence numbers of :func:`evaluate`'s indexes (SEARCH)."""
    return [i + 1 for i in indexes]
