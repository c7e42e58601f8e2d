"""The untagged FETCH response (RFC 3501 §7.4.2), byte for byte as Dovecot 2.3 writes it.

Pure formatting: the session looks the message up, applies \\Seen, and hands over a
:class:`FetchMessage` plus the parsed :class:`~mailwarden.imap.wire.fetch.FetchRequest`::

    render_fetch(msg, req, uid=True)   -> b"* 12 FETCH (UID 34 FLAGS (\\Seen) ...)\\r\\n"
    render_flags(3, 7, ("\\Seen",), 12) -> b"* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen))\\r\\n"

Item order follows Dovecot's imap-fetch.c: the "buffered" items (UID, FLAGS,
INTERNALDATE, RFC822.SIZE, MODSEQ) come first in the order asked, UID first of all for
UID FETCH, then MODSEQ implied by CHANGEDSINCE/CONDSTORE, then the FLAGS that a \\Seen
change forces; the other items follow in the order asked. Repeated items are sent once,
except BODY[...]/BINARY[...] sections, which Dovecot repeats. Body data always goes out
as a literal (``{0}`` for a missing section or a partial past the end), NUL sent as 0x80;
BINARY data as literal8 (``~{n}``) when Dovecot would (see :mod:`mailwarden.imap.binary`).

Speed: the plan for a request (item order, response names, a ``%`` template for the
metadata-only case) is computed once per request object, so ``FETCH 1:* (UID FLAGS
RFC822.SIZE)`` is one bytes formatting per message; rendered flag lists are cached. The
MIME tree is parsed at most once per response, and not at all for BODY[], BODY[HEADER],
BODY[TEXT] and RFC822*, which only need the end of the top-level header.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from mailwarden.imap.binary import BinaryData, InvalidContent, UnknownCte, binary_section
from mailwarden.imap.bodystructure import write_body
from mailwarden.imap.envelope import envelope_of
from mailwarden.imap.mimetree import MimePart, parse
from mailwarden.imap.sections import find_part, header_end, header_fields
from mailwarden.imap.wire.fetch import (
    Attr,
    BinarySection,
    BinarySize,
    BodySection,
    FetchItem,
    FetchRequest,
    Section,
)

__all__ = [
    "FetchMessage",
    "InvalidContent",
    "UnknownCte",
    "needs_body",
    "render_fetch",
    "render_flags",
]


@dataclass(slots=True)  # not frozen: built once per message per FETCH, cheaply
class FetchMessage:
    """What a FETCH response is made of, for one message."""

    seq: int
    uid: int
    flags: tuple[str, ...]  # already includes "\\Recent" when the session says so
    modseq: int
    size: int  # RFC822.SIZE (== len(raw) for our stored messages)
    internal_date: datetime  # timezone-aware
    raw: bytes | None = None  # the message bytes (CRLF line ends); None when not needed


# ------------------------------------------------------------------ metadata items

_UID, _FLAGS, _DATE, _SIZE, _MODSEQ = range(5)
# Dovecot's IMAP_FETCH_HANDLER_FLAG_BUFFERED items, written before all others
_BUFFERED = {
    Attr.UID: _UID,
    Attr.FLAGS: _FLAGS,
    Attr.INTERNALDATE: _DATE,
    Attr.RFC822_SIZE: _SIZE,
    Attr.MODSEQ: _MODSEQ,
}
_FORMATS = {
    _UID: b"UID %d",
    _FLAGS: b"FLAGS (%s)",
    _DATE: b'INTERNALDATE "%s"',  # RFC 3501 §9 date-time
    _SIZE: b"RFC822.SIZE %d",
    _MODSEQ: b"MODSEQ (%d)",  # RFC 7162 §3.1.4.1
}
# RFC 3501 §2.3.2 system flags, in the order Dovecot's imap_write_flags writes them
_SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_SYSTEM_RANK = {name.lower(): i for i, name in enumerate(_SYSTEM_FLAGS)}
_FLAGS_CACHE: dict[tuple[str, ...], bytes] = {}
_FLAGS_CACHE_MAX = 4096
_MONTHS: tuple[bytes, ...] = (b"", b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun")
_MONTHS += (b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_ZONES: dict[timedelta | None, bytes] = {}


def _flag_list(flags: tuple[str, ...]) -> bytes:
    """``\\Seen $Junk``: system flags in Dovecot's order, then keywords as given."""
    cached = _FLAGS_CACHE.get(flags)
    if cached is not None:
        return cached
    system = sorted({_SYSTEM_RANK[f.lower()] for f in flags if f.lower() in _SYSTEM_RANK})
    keywords = dict.fromkeys(f for f in flags if f.lower() not in _SYSTEM_RANK)
    text = " ".join([*(_SYSTEM_FLAGS[i] for i in system), *keywords])
    out = text.encode("utf-8")
    if len(_FLAGS_CACHE) >= _FLAGS_CACHE_MAX:
        _FLAGS_CACHE.clear()
    _FLAGS_CACHE[flags] = out
    return out


def _date_time(when: datetime) -> bytes:
    """RFC 3501 §9 date-time, ``02-Dec-2026 13:29:53 +0000`` (Dovecot pads the day with 0)."""
    offset = when.utcoffset()
    zone = _ZONES.get(offset)
    if zone is None:
        secs = int(offset.total_seconds()) if offset is not None else 0
        sign = b"-" if secs < 0 else b"+"
        zone = b"%s%02d%02d" % (sign, abs(secs) // 3600, abs(secs) % 3600 // 60)
        _ZONES[offset] = zone
    return b"%02d-%s-%04d %02d:%02d:%02d %s" % (
        when.day,
        _MONTHS[when.month],
        when.year,
        when.hour,
        when.minute,
        when.second,
        zone,
    )


_VALUES: dict[int, Callable[[FetchMessage], int | bytes]] = {
    _UID: lambda m: m.uid,
    _FLAGS: lambda m: _flag_list(m.flags),
    _DATE: lambda m: _date_time(m.internal_date),
    _SIZE: lambda m: m.size,
    _MODSEQ: lambda m: m.modseq,
}


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class _Plan:
    codes: tuple[int, ...]  # the buffered items, in response order
    head: tuple[Callable[[FetchMessage], int | bytes], ...]  # values of the buffered items
    head_format: bytes  # "UID %d FLAGS (%s)"
    rest: tuple[tuple[FetchItem, bytes], ...]  # the other items with their response names
    line_format: bytes  # the whole line, for a response without body items


@lru_cache(maxsize=256)
def _make_plan(
    items: tuple[FetchItem, ...], changedsince: bool, uid: bool, modseq: bool, seen: bool
) -> _Plan:
    head: list[int] = [_UID] if uid else []  # RFC 3501 §6.4.8: UID FETCH always sends UID
    rest: list[tuple[FetchItem, bytes]] = []
    for item in items:
        if isinstance(item, Attr) and item in _BUFFERED:
            code = _BUFFERED[item]
            if code not in head:
                head.append(code)
        elif isinstance(item, Attr):
            if all(item is not other for other, _name in rest):
                rest.append((item, item.value.encode("ascii")))
        else:
            rest.append((item, _response_name(item)))
    if (modseq or changedsince) and _MODSEQ not in head:
        head.append(_MODSEQ)  # RFC 7162 §3.1.4.1 / §3.2
    if seen and _FLAGS not in head:
        head.append(_FLAGS)  # RFC 3501 §6.4.5: a \Seen change is reported in FETCH
    head_format = b" ".join(_FORMATS[code] for code in head)
    line_format = b"* %d FETCH (" + head_format + b")\r\n"
    values = tuple(_VALUES[code] for code in head)
    return _Plan(tuple(head), values, head_format, tuple(rest), line_format)


def _response_name(item: BodySection | BinarySection | BinarySize) -> bytes:
    if isinstance(item, BodySection) and item.section.fields:
        # Dovecot echoes the header names upper-cased: BODY[HEADER.FIELDS (FROM SUBJECT)]
        section = item.section
        upper = Section(section.part, section.text, tuple(f.upper() for f in section.fields))
        item = BodySection(upper, item.partial, item.peek)
    return item.response_name.encode("ascii")


_MEMO: list[tuple[FetchRequest, list[_Plan | None]]] = []


def _plan_for(req: FetchRequest, uid: bool, modseq: bool, seen: bool) -> _Plan:
    """The plan for ``req``; remembered for the request object of the running FETCH."""
    key = uid + 2 * modseq + 4 * seen
    memo = _MEMO[0] if _MEMO else None
    if memo is None or memo[0] is not req:
        memo = (req, [None] * 8)
        _MEMO[:] = [memo]
    plan = memo[1][key]
    if plan is None:
        plan = _make_plan(req.items, req.changedsince is not None, uid, modseq, seen)
        memo[1][key] = plan
    return plan


# ------------------------------------------------------------------ body items

_META_ATTRS = frozenset(_BUFFERED)


def needs_body(req: FetchRequest) -> bool:
    """Whether any item needs the message bytes (all but UID/FLAGS/sizes/dates/MODSEQ)."""
    return any(not (isinstance(i, Attr) and i in _META_ATTRS) for i in req.items)


class _Message:
    """The raw bytes of one message, with the MIME tree parsed on first use."""

    __slots__ = ("_binary", "_root", "_top", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._root: MimePart | None = None
        self._top: MimePart | None = None
        self._binary: dict[tuple[int, ...], BinaryData] = {}

    def root(self) -> MimePart:
        if self._root is None:
            self._root = parse(self.raw)
        return self._root

    def top(self) -> MimePart:
        """The top-level part, parsed only as far as its header if not parsed already."""
        if self._root is not None:
            return self._root
        if self._top is None:
            self._top = _top_part(self.raw)
        return self._top

    def binary(self, part: tuple[int, ...]) -> BinaryData:
        data = self._binary.get(part)
        if data is None:
            data = self._binary[part] = binary_section(self.raw, self.root(), part)
        return data


def _top_part(raw: bytes) -> MimePart:
    """The top-level header/body split exactly as mimetree.parse makes it (first empty line)."""
    if raw.startswith((b"\r\n", b"\n")):
        body = 2 if raw[0] == 0x0D else 1
    else:
        crlf, lf = raw.find(b"\n\r\n"), raw.find(b"\n\n")
        ends = [i + skip for i, skip in ((crlf, 3), (lf, 2)) if i >= 0]
        body = min(ends) if ends else len(raw)
    return MimePart(0, body, len(raw))


def _section_bytes(msg: _Message, section: Section) -> bytes | None:
    """RFC 3501 §6.4.5 BODY[section] (as sections.section, on the parse-once tree)."""
    raw, kind = msg.raw, section.text or ""
    if not section.part:
        if not kind:
            return raw
        part = msg.top()
    else:
        found = find_part(msg.root(), section.part)
        if found is None:
            return None
        if kind == "MIME":
            return raw[found.offset : header_end(found)]
        if not kind:
            return raw[found.body_offset : found.end]
        if not found.rfc822 or not found.children:
            return None  # HEADER/TEXT only exist for message/rfc822 parts
        part = found.children[0]
    if kind == "HEADER":
        return raw[part.offset : header_end(part)]
    if kind == "TEXT":
        return raw[part.body_offset : part.end]
    return header_fields(raw, part, section.fields, kind == "HEADER.FIELDS")


_RFC822_SECTIONS = {
    Attr.RFC822: Section(),
    Attr.RFC822_HEADER: Section((), "HEADER"),
    Attr.RFC822_TEXT: Section((), "TEXT"),
}


def _literal(name: bytes, data: bytes, out: list[bytes]) -> None:
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")  # NUL cannot be sent in a literal (§4.3)
    out += (name, b" {%d}\r\n" % len(data), data)


def _render_item(msg: _Message, item: FetchItem, name: bytes, out: list[bytes]) -> None:
    if isinstance(item, BodySection):
        data = _section_bytes(msg, item.section) or b""  # missing section: empty (Dovecot)
        if item.partial is not None:  # §6.4.5 <offset.length>
            data = data[item.partial.offset : item.partial.offset + item.partial.length]
        _literal(name, data, out)
    elif isinstance(item, BinarySection):
        binary = msg.binary(item.part)
        data = binary.data
        if item.partial is not None:  # RFC 3516 §4.1: partial of the decoded data
            data = data[item.partial.offset : item.partial.offset + item.partial.length]
        prefix = b" ~{%d}\r\n" if binary.literal8 else b" {%d}\r\n"  # RFC 3516 §4.2
        out += (name, prefix % len(data), data)
    elif isinstance(item, BinarySize):
        out += (name, b" %d" % len(msg.binary(item.part).data))  # RFC 3516 §4.2
    elif item is Attr.ENVELOPE:
        out += (b"ENVELOPE ", envelope_of(msg.root()))
    elif item is Attr.BODY or item is Attr.BODYSTRUCTURE:
        out += (name, b" (")
        write_body(msg.raw, msg.root(), item is Attr.BODYSTRUCTURE, out)
        out.append(b")")
    else:  # RFC822, RFC822.HEADER, RFC822.TEXT (§6.4.5): BODY[], BODY[HEADER], BODY[TEXT]
        _literal(name, _section_bytes(msg, _RFC822_SECTIONS[item]) or b"", out)


# ------------------------------------------------------------------ responses


def render_fetch(
    msg: FetchMessage,
    req: FetchRequest,
    *,
    uid: bool = False,
    modseq: bool = False,
    seen_added: bool = False,
) -> bytes:
    """The complete untagged FETCH response for ``msg`` (RFC 3501 §7.4.2).

    ``uid``: UID FETCH (UID is always sent, §6.4.8). ``modseq``: CONDSTORE is enabled,
    MODSEQ is always sent (RFC 7162). ``seen_added``: the session has just set \\Seen for
    this fetch, so FLAGS is always sent (§6.4.5). Raises :class:`UnknownCte` (or its
    subclass :class:`InvalidContent`) for a BINARY item that cannot be decoded.
    """
    plan = _plan_for(req, uid, modseq, seen_added)
    values = [get(msg) for get in plan.head]
    if not plan.rest:
        return plan.line_format % (msg.seq, *values)
    if msg.raw is None:
        raise ValueError("this FETCH needs the message bytes (see needs_body)")
    message = _Message(msg.raw)
    out = [b"* %d FETCH (" % msg.seq]
    if values:
        out += (plan.head_format % tuple(values), b" ")
    for item, name in plan.rest:
        _render_item(message, item, name, out)
        out.append(b" ")
    out[-1] = b")\r\n"
    return b"".join(out)


def render_meta(
    req: FetchRequest,
    *,
    uid: bool,
    seqs: Sequence[int],
    uids: Sequence[int],
    flags: Sequence[tuple[str, ...]],
    modseqs: Sequence[int],
    sizes: Sequence[int],
) -> list[bytes]:
    """Responses for many messages at once when only UID, FLAGS, RFC822.SIZE and MODSEQ
    are asked for (``FETCH 1:* (UID FLAGS RFC822.SIZE)``): the same bytes as
    :func:`render_fetch`, built column by column (one formatting call per message)."""
    plan = _plan_for(req, uid, False, False)
    if plan.rest or _DATE in plan.codes:
        raise ValueError("render_meta is only for UID/FLAGS/RFC822.SIZE/MODSEQ")
    columns: dict[int, Sequence[int] | list[bytes]] = {
        _UID: uids,
        _SIZE: sizes,
        _MODSEQ: modseqs,
    }
    if _FLAGS in plan.codes:
        columns[_FLAGS] = [_flag_list(f) for f in flags]
    fmt = plan.line_format
    return [fmt % row for row in zip(seqs, *(columns[c] for c in plan.codes), strict=True)]


def render_flags(seq: int, uid: int | None, flags: tuple[str, ...], modseq: int | None) -> bytes:
    """A flag update (STORE, or another session's change), as Dovecot orders it.

    ``* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen))``: UID only for UID STORE / when the
    session wants it (RFC 3501 §6.4.8), MODSEQ only with CONDSTORE (RFC 7162 §3.2).
    """
    out = b"* %d FETCH (" % seq
    if uid is not None:
        out += b"UID %d " % uid
    if modseq is not None:
        out += b"MODSEQ (%d) " % modseq
    return out + b"FLAGS (" + _flag_list(flags) + b"))\r\n"
