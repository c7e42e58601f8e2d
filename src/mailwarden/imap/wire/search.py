"""SEARCH arguments and search keys (RFC 3501 §6.4.4, RFC 4731, RFC 5182, RFC 7162).

The search keys become a small AST (:class:`And`, :class:`Or`, :class:`Not` over leaf
nodes) meant to be compiled to SQL. ``NEW`` and ``OLD`` are expanded into flag leaves
(§6.4.4: NEW = RECENT UNSEEN, OLD = NOT RECENT). Search strings stay bytes: their
charset is the command's ``CHARSET`` and the session decodes them.

Parsing uses an explicit stack, never recursion; nesting (``NOT``, ``OR``, parentheses)
is bounded by :data:`MAX_SEARCH_DEPTH`, so ``NOT NOT NOT ...`` ten thousand times is a
clean :class:`ImapSyntaxError`, not a ``RecursionError``. SORT and THREAD are in
``sort.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import (
    MAX_NUMBER64,
    Atom,
    ImapSyntaxError,
    ParenList,
    String,
    Token,
    astring,
    number,
    paren_list,
)

MAX_SEARCH_DEPTH = 64  # NOT / OR / parentheses nesting
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")  # §9 date-text
_SEQ_START = frozenset("0123456789*$")
# §9 flag-keyword = atom: ATOM-CHAR excludes atom-specials and "]" (resp-specials).
_KEYWORD = re.compile(r'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')


# -- AST --


@dataclass(frozen=True, slots=True)
class All:
    """``ALL`` (§6.4.4)."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A flag or keyword is set (``present``) or not: ANSWERED, UNSEEN, KEYWORD k, ..."""

    flag: str  # "\\Seen" etc. canonical; keywords as sent
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """BCC/CC/FROM/SUBJECT/TO s and HEADER name s: substring of a header field (§6.4.4)."""

    name: str  # header field name, canonical for the shortcuts ("From", "Subject", ...)
    value: bytes


@dataclass(frozen=True, slots=True)
class BodyKey:
    """``BODY s`` (body only) or ``TEXT s`` (header and body, ``text=True``)."""

    value: bytes
    text: bool = False


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date: header)."""

    op: Literal["before", "on", "since"]
    day: date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SizeKey:
    """``LARGER n`` (size > n) / ``SMALLER n`` (size < n), RFC822.SIZE (§6.4.4)."""

    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class SetKey:
    """A sequence set (message numbers) or ``UID set``; ``$`` is RFC 5182's saved result."""

    numbers: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """RFC 7162 §3.1.5 ``MODSEQ [entry-name entry-type] n``: mod-sequence >= n."""

    modseq: int
    entry: bytes | None = None  # e.g. b"/flags/\\draft"
    entry_type: Literal["priv", "shared", "all"] | None = None


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """All of ``keys`` (a parenthesised group, or the top-level key list)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    All | FlagKey | HeaderKey | BodyKey | DateKey | SizeKey | SetKey | ModSeqKey | Not | Or | And
)

# -- requests --

_RETURN_OPTIONS: frozenset[str] = frozenset({"MIN", "MAX", "COUNT", "ALL", "SAVE"})


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """SEARCH / UID SEARCH arguments; ``returns`` None means a classic ``* SEARCH``."""

    query: SearchKey
    charset: str | None = None
    returns: frozenset[str] | None = None  # RFC 4731 ESEARCH; empty list means {"ALL"}


def parse_search(args: Sequence[Token]) -> SearchRequest:
    """``SEARCH [RETURN (opts)] [CHARSET astring] 1*(SP search-key)`` (§6.4.4, RFC 4731 §3)."""
    i = 0
    returns: frozenset[str] | None = None
    if i < len(args) and word_of(args[i]) == "RETURN":
        if i + 1 >= len(args):
            raise ImapSyntaxError("RETURN needs an option list")
        returns = parse_return_options(args[i + 1])
        i += 2
    charset: str | None = None
    if i < len(args) and word_of(args[i]) == "CHARSET":
        if i + 1 >= len(args):
            raise ImapSyntaxError("CHARSET needs a name")
        charset = parse_charset(args[i + 1])
        i += 2
    return SearchRequest(parse_search_keys(args[i:]), charset, returns)


def parse_return_options(tok: Token, *, allow_save: bool = True) -> frozenset[str]:
    # RFC 4731 §3.1: "RETURN ()" is the same as "RETURN (ALL)"; RFC 5182 §2 adds SAVE.
    items = paren_list(tok)
    words = {word_of(t) for t in items}
    allowed = _RETURN_OPTIONS if allow_save else _RETURN_OPTIONS - {"SAVE"}
    if not words <= allowed:
        raise ImapSyntaxError("unknown RETURN option")
    return frozenset(words) if words else frozenset({"ALL"})


def parse_charset(tok: Token) -> str:
    # §6.4.4 CHARSET astring; an unsupported one is the session's NO [BADCHARSET].
    raw = astring(tok)
    if not raw or not raw.isascii():
        raise ImapSyntaxError("invalid charset name")
    return raw.decode("ascii").upper()


def word_of(tok: Token) -> str:
    return tok.value.upper() if isinstance(tok, Atom) else ""


# -- search keys --


@dataclass(slots=True)
class _Group:
    """A token sequence being consumed: the top level or a parenthesised list."""

    toks: Sequence[Token]
    pos: int = 0
    keys: list[SearchKey] = field(default_factory=list)


@dataclass(slots=True)
class _Op:
    """``NOT`` (1 operand) or ``OR`` (2 operands) waiting for its operands."""

    name: str
    group: _Group  # operands are read from this group's tokens
    keys: list[SearchKey] = field(default_factory=list)


def parse_search_keys(toks: Sequence[Token]) -> SearchKey:
    """``1*(SP search-key)`` (§6.4.4: all keys must match) as one AST node."""
    if not toks:
        raise ImapSyntaxError("missing search keys")
    stack: list[_Group | _Op] = [_Group(toks)]
    done: SearchKey | None = None
    while True:
        frame = stack[-1]
        if done is not None:
            frame.keys.append(done)
            done = None
            if isinstance(frame, _Op):
                if frame.name == "NOT":
                    done = Not(frame.keys[0])
                elif len(frame.keys) == 2:
                    done = Or(frame.keys[0], frame.keys[1])
                if done is not None:
                    stack.pop()
                continue
        group = frame if isinstance(frame, _Group) else frame.group
        if group.pos >= len(group.toks):
            if isinstance(frame, _Op):
                raise ImapSyntaxError(f"{frame.name} needs more search keys")
            stack.pop()
            if not frame.keys:
                raise ImapSyntaxError("empty search key list")  # §9: 1*search-key
            done = frame.keys[0] if len(frame.keys) == 1 else And(tuple(frame.keys))
            if not stack:
                return done
            continue
        tok = group.toks[group.pos]
        group.pos += 1
        word = word_of(tok)
        if isinstance(tok, ParenList) or word in ("NOT", "OR"):
            if len(stack) > MAX_SEARCH_DEPTH:
                raise ImapSyntaxError("search keys nested too deeply")
            # §9: search-key =/ "NOT" SP search-key / "OR" SP search-key SP search-key /
            # "(" search-key *(SP search-key) ")"
            stack.append(_Group(tok.items) if isinstance(tok, ParenList) else _Op(word, group))
            continue
        done = _leaf(tok, word, group)


_FLAG_KEYS: dict[str, FlagKey] = {
    "ANSWERED": FlagKey("\\Answered"),
    "DELETED": FlagKey("\\Deleted"),
    "DRAFT": FlagKey("\\Draft"),
    "FLAGGED": FlagKey("\\Flagged"),
    "SEEN": FlagKey("\\Seen"),
    "RECENT": FlagKey("\\Recent"),
    "OLD": FlagKey("\\Recent", present=False),  # §6.4.4 OLD = NOT RECENT
    "UNANSWERED": FlagKey("\\Answered", present=False),
    "UNDELETED": FlagKey("\\Deleted", present=False),
    "UNDRAFT": FlagKey("\\Draft", present=False),
    "UNFLAGGED": FlagKey("\\Flagged", present=False),
    "UNSEEN": FlagKey("\\Seen", present=False),
}
_NEW = And((FlagKey("\\Recent"), FlagKey("\\Seen", present=False)))  # §6.4.4 NEW
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS: dict[str, tuple[Literal["before", "on", "since"], bool]] = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # RFC 5322 §3.6.8 ftext
_ENTRY_TYPES: dict[str, Literal["priv", "shared", "all"]] = {
    "PRIV": "priv",
    "SHARED": "shared",
    "ALL": "all",
}


def _leaf(tok: Token, word: str, group: _Group) -> SearchKey:
    """A search key without sub-keys; its arguments are taken from ``group``."""

    def arg() -> Token:
        if group.pos >= len(group.toks):
            raise ImapSyntaxError(f"{word} needs an argument")
        group.pos += 1
        return group.toks[group.pos - 1]

    if word == "ALL":
        return All()
    if word in _FLAG_KEYS:
        return _FLAG_KEYS[word]
    if word == "NEW":
        return _NEW
    if word in _HEADER_KEYS:
        return HeaderKey(_HEADER_KEYS[word], _string(arg()))
    if word == "HEADER":  # §6.4.4 HEADER field-name string
        name = astring(arg())
        if not _FIELD_NAME.fullmatch(name):
            raise ImapSyntaxError("invalid header field name")
        return HeaderKey(name.decode("ascii"), _string(arg()))
    if word in ("BODY", "TEXT"):
        return BodyKey(_string(arg()), text=word == "TEXT")
    if word in _DATE_KEYS:
        op, sent = _DATE_KEYS[word]
        return DateKey(op, parse_date(arg()), sent)
    if word in ("KEYWORD", "UNKEYWORD"):  # §9 flag-keyword
        return FlagKey(_keyword(arg()), present=word == "KEYWORD")
    if word in ("LARGER", "SMALLER"):
        return SizeKey("larger" if word == "LARGER" else "smaller", number(arg()))
    if word == "UID":
        return SetKey(_sequence_set(arg()), uid=True)
    if word == "MODSEQ":
        return _modseq(arg)
    if isinstance(tok, Atom) and tok.value[:1] in _SEQ_START:
        return SetKey(_sequence_set(tok))  # §9 search-key =/ sequence-set; RFC 5182 "$"
    if isinstance(tok, Atom):
        raise ImapSyntaxError(f"unknown search key {tok.value[:40]}")
    raise ImapSyntaxError("expected a search key")


def _modseq(arg: Callable[[], Token]) -> ModSeqKey:
    # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer;
    # entry-name = DQUOTE "/flags/" attr-flag DQUOTE (a quoted string).
    tok = arg()
    if isinstance(tok, String):
        entry = tok.value
        if not entry.lower().startswith(b"/flags/") or len(entry) <= len(b"/flags/"):
            raise ImapSyntaxError("invalid MODSEQ entry name")
        kind = _ENTRY_TYPES.get(word_of(arg()))
        if kind is None:
            raise ImapSyntaxError("invalid MODSEQ entry type (priv, shared or all)")
        return ModSeqKey(number(arg(), limit=MAX_NUMBER64), entry, kind)
    return ModSeqKey(number(tok, limit=MAX_NUMBER64))


def _string(tok: Token) -> bytes:
    # §9 search strings are astring.
    return astring(tok)


def _keyword(tok: Token) -> str:
    if not isinstance(tok, Atom) or not _KEYWORD.fullmatch(tok.value):
        raise ImapSyntaxError("invalid keyword")
    return tok.value


def _sequence_set(tok: Token) -> SequenceSet:
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("expected a sequence set")
    return SequenceSet.parse(tok.value)


def parse_date(tok: Token) -> date:
    """§9 ``date = date-text / DQUOTE date-text DQUOTE``; ``date-text = d-Mmm-yyyy``."""
    if isinstance(tok, Atom):
        text = tok.value
    elif isinstance(tok, String) and not tok.literal:
        text = tok.value.decode("ascii", "replace")
    else:
        raise ImapSyntaxError("expected a date")
    m = _DATE.fullmatch(text)
    month = m.group(2).upper() if m else ""
    if m is None or month not in MONTHS:
        raise ImapSyntaxError(f"invalid date {text[:40]!r} (expected d-Mmm-yyyy)")
    try:
        return date(int(m.group(3)), MONTHS.index(month) + 1, int(m.group(1)))
    except ValueError:
        raise ImapSyntaxError(f"invalid date {text[:40]!r}") from None
