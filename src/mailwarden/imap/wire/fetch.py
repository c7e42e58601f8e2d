"""FETCH attribute lists (RFC 3501 §6.4.5, §9 fetch-att; RFC 3516 BINARY; RFC 7162 MODSEQ).

The reader hands ``BODY[HEADER.FIELDS (A B)]<0.10>`` over as three tokens (atom
``BODY[HEADER.FIELDS``, list ``(A B)``, atom ``]<0.10>``, see ``lexer.py``);
:func:`parse_fetch` joins them back into typed values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from mailwarden.imap.wire.tokens import (
    MAX_NUMBER,
    MAX_NUMBER64,
    Atom,
    ImapSyntaxError,
    ParenList,
    Token,
    parse_number,
)


class Attr(StrEnum):
    """The fetch-att names without a section (§9, RFC 7162 §3.1.4)."""

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_SIZE = "RFC822.SIZE"
    RFC822_TEXT = "RFC822.TEXT"
    BODY = "BODY"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"


_A = Attr
# §6.4.5 macros; only valid on their own, not inside a list (§9 fetch grammar).
MACROS: dict[str, tuple[Attr, ...]] = {
    "ALL": (_A.FLAGS, _A.INTERNALDATE, _A.RFC822_SIZE, _A.ENVELOPE),
    "FAST": (_A.FLAGS, _A.INTERNALDATE, _A.RFC822_SIZE),
    "FULL": (_A.FLAGS, _A.INTERNALDATE, _A.RFC822_SIZE, _A.ENVELOPE, _A.BODY),
}
_ATTRS = {a.value: a for a in Attr}

_PART = rb"[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9}){0,63}"  # §9 section-part, ≤ 64 levels
_TEXTS = rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT"
# §9 section-spec = section-msgtext / (section-part ["." section-text]);
# section-text = section-msgtext / "MIME".
_SECTION = re.compile(
    rb"(?:(?P<part>" + _PART + rb")(?:\.(?P<ptext>" + _TEXTS + rb"|MIME))?"
    rb"|(?P<text>" + _TEXTS + rb"))?"
)
_PART_ONLY = re.compile(_PART)
_PARTIAL = re.compile(rb"<([0-9]{1,10})\.([0-9]{1,10})>")  # §9 partial
_FIELD_LISTS = ("HEADER.FIELDS", "HEADER.FIELDS.NOT")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")
_ATOM_SAFE = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")


@dataclass(frozen=True, slots=True)
class Partial:
    """``<offset.length>`` (§6.4.5); the response names only the offset (§7.4.2)."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Section:
    """A body section (§6.4.5): part path, then HEADER[.FIELDS[.NOT]] / TEXT / MIME."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()  # as the client spelled them, for the response echo

    def __str__(self) -> str:
        spec = ".".join([*map(str, self.part), *([self.text] if self.text else [])])
        if self.text in _FIELD_LISTS:
            spec += " (" + " ".join(map(_field, self.fields)) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<partial>`` / ``BODY.PEEK[...]``; without PEEK it sets \\Seen."""

    section: Section
    partial: Partial | None = None
    peek: bool = False

    @property
    def response_name(self) -> str:
        return f"BODY[{self.section}]" + _origin(self.partial)


@dataclass(frozen=True, slots=True)
class BinarySection:
    """RFC 3516 ``BINARY[part]<partial>`` / ``BINARY.PEEK[...]``: decoded content."""

    part: tuple[int, ...]
    partial: Partial | None = None
    peek: bool = False

    @property
    def response_name(self) -> str:
        return f"BINARY[{'.'.join(map(str, self.part))}]" + _origin(self.partial)


@dataclass(frozen=True, slots=True)
class BinarySize:
    """RFC 3516 ``BINARY.SIZE[part]``."""

    part: tuple[int, ...]

    @property
    def response_name(self) -> str:
        return f"BINARY.SIZE[{'.'.join(map(str, self.part))}]"


FetchItem = Attr | BodySection | BinarySection | BinarySize


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Parsed FETCH arguments after the sequence set."""

    items: tuple[FetchItem, ...]
    changedsince: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE
    vanished: bool = False  # RFC 7162 §3.2.6 (UID FETCH only: the session checks)

    @property
    def sets_seen(self) -> bool:
        """§6.4.5: BODY[...] (not PEEK), BINARY[...], RFC822, RFC822.TEXT set \\Seen."""
        return any(
            (isinstance(i, BodySection | BinarySection) and not i.peek)
            or i in (Attr.RFC822, Attr.RFC822_TEXT)
            for i in self.items
        )

    @property
    def wants_modseq(self) -> bool:
        """MODSEQ asked for, or implied by CHANGEDSINCE (RFC 7162 §3.1.4.1)."""
        return Attr.MODSEQ in self.items or self.changedsince is not None


def parse_fetch(args: Sequence[Token]) -> FetchRequest:
    """Parse ``fetch-att / "(" fetch-att *(SP fetch-att) ")"`` [fetch-modifiers]."""
    if not args:
        raise ImapSyntaxError("missing FETCH attributes")
    first = args[0]
    if isinstance(first, ParenList):
        items = _parse_items(first.items)
        rest = args[1:]
    elif isinstance(first, Atom) and first.value.upper() in MACROS:
        items, rest = MACROS[first.value.upper()], args[1:]
    else:
        item, used = _parse_item(args, 0)
        items, rest = (item,), args[used:]
    if not rest:
        return FetchRequest(items)
    if len(rest) > 1 or not isinstance(rest[0], ParenList):
        raise ImapSyntaxError("unexpected FETCH arguments")
    changedsince, vanished = _parse_modifiers(rest[0].items)
    return FetchRequest(items, changedsince, vanished)


def _parse_items(toks: Sequence[Token]) -> tuple[FetchItem, ...]:
    if not toks:
        raise ImapSyntaxError("empty FETCH attribute list")
    items: list[FetchItem] = []
    i = 0
    while i < len(toks):
        item, i = _parse_item(toks, i)
        items.append(item)
    return tuple(items)


def _parse_item(toks: Sequence[Token], i: int) -> tuple[FetchItem, int]:
    """One fetch-att starting at ``toks[i]``; returns it and the next index."""
    tok = toks[i]
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("invalid FETCH attribute")
    name = tok.value.upper()
    if "[" not in name:
        attr = _ATTRS.get(name)
        if attr is None:
            raise ImapSyntaxError(f"unknown FETCH attribute {tok.value[:40]}")
        return attr, i + 1
    head, _, spec = name.partition("[")
    fields: tuple[str, ...] = ()
    if "]" in spec:
        spec, _, tail = spec.partition("]")
        used = 1
    else:  # "BODY[HEADER.FIELDS" (list) "]<p>": see the module docstring
        fields, tail = _field_list(toks, i)
        used = 3
    partial = _parse_partial(tail)
    return _build(head, spec, fields, partial), i + used


def _field_list(toks: Sequence[Token], i: int) -> tuple[tuple[str, ...], str]:
    """The §9 header-list after ``...HEADER.FIELDS``, and what follows its ``]``."""
    lst = toks[i + 1] if i + 1 < len(toks) else None
    end = toks[i + 2] if i + 2 < len(toks) else None
    if not isinstance(lst, ParenList) or not isinstance(end, Atom) or end.value[:1] != "]":
        raise ImapSyntaxError("invalid section: missing ']'")
    if not lst.items:
        raise ImapSyntaxError("empty header field list")
    return tuple(_header_name(t) for t in lst.items), end.value[1:]


def _header_name(tok: Token) -> str:
    # §9 header-fld-name = astring; RFC 5322 §3.6.8: printable ASCII except ":".
    raw = tok.value.encode("ascii") if isinstance(tok, Atom) else getattr(tok, "value", b"")
    if isinstance(raw, bytes) and _FIELD_NAME.fullmatch(raw):
        return raw.decode("ascii")
    raise ImapSyntaxError("invalid header field name")


def _build(head: str, spec: str, fields: tuple[str, ...], partial: Partial | None) -> FetchItem:
    if head in ("BODY", "BODY.PEEK"):
        section = _parse_section(spec, fields)
        return BodySection(section, partial, peek=head == "BODY.PEEK")
    if head in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        if fields:
            raise ImapSyntaxError("BINARY takes a part number only")
        if spec and not _is_part(spec):
            raise ImapSyntaxError("BINARY takes a part number only")  # RFC 3516 §4.1
        part = _parse_section(spec, ()).part
        if head == "BINARY.SIZE":
            if partial is not None:
                raise ImapSyntaxError("BINARY.SIZE takes no partial")
            return BinarySize(part)
        return BinarySection(part, partial, peek=head == "BINARY.PEEK")
    raise ImapSyntaxError(f"unknown FETCH attribute {head[:40]}[")


def _parse_section(spec: str, fields: tuple[str, ...]) -> Section:
    m = _SECTION.fullmatch(spec.encode("ascii", "replace"))
    if m is None:
        raise ImapSyntaxError(f"invalid section {spec[:60]!r}")
    part_text = m.group("part")
    part = tuple(int(p) for p in part_text.split(b".")) if part_text else ()
    if any(p > MAX_NUMBER for p in part):
        raise ImapSyntaxError("section part number out of range")
    raw = m.group("ptext") or m.group("text")
    text = raw.decode("ascii") if raw else None
    if (text in _FIELD_LISTS) != bool(fields):
        raise ImapSyntaxError("HEADER.FIELDS needs a header list")
    return Section(part, text, fields)


def _is_part(spec: str) -> bool:
    return _PART_ONLY.fullmatch(spec.encode("ascii", "replace")) is not None


def _parse_partial(tail: str) -> Partial | None:
    if not tail:
        return None
    m = _PARTIAL.fullmatch(tail.encode("ascii", "replace"))
    if m is None:
        raise ImapSyntaxError(f"invalid partial {tail[:40]!r}")
    offset, length = int(m.group(1)), int(m.group(2))
    if offset > MAX_NUMBER or not 0 < length <= MAX_NUMBER:  # §9: number "." nz-number
        raise ImapSyntaxError("partial out of range")
    return Partial(offset, length)


def _parse_modifiers(toks: Sequence[Token]) -> tuple[int | None, bool]:
    """RFC 4466 §2.4 fetch-modifiers; RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED."""
    changedsince: int | None = None
    vanished = False
    i = 0
    while i < len(toks):
        tok = toks[i]
        word = tok.value.upper() if isinstance(tok, Atom) else ""
        if word == "CHANGEDSINCE" and changedsince is None and i + 1 < len(toks):
            nxt = toks[i + 1]
            value = nxt.value if isinstance(nxt, Atom) else ""
            # mod-sequence-value is 1..2^63-1; 0 is accepted (some clients send it).
            changedsince = parse_number(value, limit=MAX_NUMBER64)
            i += 2
        elif word == "VANISHED" and not vanished:
            vanished = True
            i += 1
        else:
            raise ImapSyntaxError("invalid FETCH modifier")
    if vanished and changedsince is None:
        raise ImapSyntaxError("VANISHED requires CHANGEDSINCE")  # RFC 7162 §3.2.6
    return changedsince, vanished


def _origin(partial: Partial | None) -> str:
    return f"<{partial.offset}>" if partial is not None else ""


def _field(name: str) -> str:
    if _ATOM_SAFE.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
