"""Typed arguments of the simpler IMAP commands (RFC 3501, RFC 7162, RFC 6154, RFC 2971, ...).

Each ``parse_*`` takes a :class:`~mailwarden.imap.wire.reader.RawCommand`'s ``args`` and
returns a frozen dataclass or raises :class:`ImapSyntaxError` (the session's BAD text).
Mailbox names stay raw bytes (modified UTF-7, or UTF-8 after ``ENABLE UTF8=ACCEPT``);
decoding them and ``INBOX`` case folding are the session's job. Flags, STORE and APPEND
are in ``message_args.py``, SEARCH in ``search.py``, SORT/THREAD in ``sort.py``, LIST in
``listing.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import (
    MAX_NUMBER64,
    Atom,
    ImapSyntaxError,
    String,
    Token,
    astring,
    is_nil,
    nstring,
    number,
    paren_list,
)

# §9 atom: ATOM-CHAR excludes atom-specials and "]" (resp-specials).
ATOM_RE = re.compile(r'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')


# -- STATUS (§6.3.10, RFC 7162 §3.1.6, RFC 8438) --

STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE")


@dataclass(frozen=True, slots=True)
class StatusRequest:
    mailbox: bytes
    items: tuple[str, ...]


def parse_status_items(tok: Token) -> tuple[str, ...]:
    """§9 ``"(" status-att *(SP status-att) ")"``, upper-cased and deduplicated."""
    toks = paren_list(tok)
    if not toks:
        raise ImapSyntaxError("empty STATUS item list")
    items: dict[str, None] = {}
    for t in toks:
        word = t.value.upper() if isinstance(t, Atom) else ""
        if word not in STATUS_ITEMS:
            raise ImapSyntaxError("unknown STATUS item")
        items[word] = None
    return tuple(items)


def parse_status(args: Sequence[Token]) -> StatusRequest:
    if len(args) != 2:
        raise ImapSyntaxError("STATUS needs a mailbox and an item list")
    return StatusRequest(parse_mailbox(args[0]), parse_status_items(args[1]))


# -- SELECT / EXAMINE (§6.3.1, RFC 7162 §3.1.8, §3.2.5) --


@dataclass(frozen=True, slots=True)
class QResync:
    """RFC 7162 §3.2.5 ``QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_seqs: SequenceSet | None = None  # seq-match-data: message numbers ...
    known_seq_uids: SequenceSet | None = None  # ... and their UIDs, pairwise


@dataclass(frozen=True, slots=True)
class SelectRequest:
    mailbox: bytes
    condstore: bool = False
    qresync: QResync | None = None


def parse_select(args: Sequence[Token]) -> SelectRequest:
    """``mailbox [SP "(" select-param *(SP select-param) ")"]`` (RFC 4466 §2.1)."""
    if not args or len(args) > 2:
        raise ImapSyntaxError("SELECT needs a mailbox and optional parameters")
    mailbox = parse_mailbox(args[0])
    condstore = False
    qresync: QResync | None = None
    params = paren_list(args[1]) if len(args) == 2 else ()
    i = 0
    while i < len(params):
        param = params[i]
        word = param.value.upper() if isinstance(param, Atom) else ""
        if word == "CONDSTORE" and not condstore:  # RFC 7162 §3.1.8
            condstore = True
            i += 1
        elif word == "QRESYNC" and qresync is None and i + 1 < len(params):
            qresync = _qresync(paren_list(params[i + 1]))
            i += 2
        else:
            raise ImapSyntaxError("unknown SELECT parameter")  # RFC 4466 §2.1: BAD
    return SelectRequest(mailbox, condstore, qresync)


def _qresync(toks: Sequence[Token]) -> QResync:
    # RFC 7162 §7: "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
    #   [SP seq-match-data] ")"; seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    if not 2 <= len(toks) <= 4:
        raise ImapSyntaxError("invalid QRESYNC parameters")
    uidvalidity = number(toks[0], nonzero=True)
    modseq = number(toks[1], nonzero=True, limit=MAX_NUMBER64)
    known: SequenceSet | None = None
    rest = toks[2:]
    if rest and isinstance(rest[0], Atom):
        known = _known_set(rest[0])
        rest = rest[1:]
    if not rest:
        return QResync(uidvalidity, modseq, known)
    match = paren_list(rest[0])
    if len(rest) != 1 or len(match) != 2:
        raise ImapSyntaxError("invalid QRESYNC sequence match data")
    return QResync(uidvalidity, modseq, known, _known_set(match[0]), _known_set(match[1]))


def _known_set(tok: Token) -> SequenceSet:
    numbers = parse_sequence_set(tok)
    if numbers.saved:
        raise ImapSyntaxError("'$' is not allowed in QRESYNC")
    return numbers


# -- ENABLE (RFC 5161), CREATE (RFC 6154 §3), COPY / MOVE, ID (RFC 2971), quota --


def parse_enable(args: Sequence[Token]) -> tuple[str, ...]:
    """RFC 5161 §3.1 ``ENABLE 1*(SP capability)``, upper-cased."""
    if not args:
        raise ImapSyntaxError("ENABLE needs a capability")
    caps = [t.value.upper() for t in args if isinstance(t, Atom)]
    if len(caps) != len(args):
        raise ImapSyntaxError("ENABLE takes capability names")
    return tuple(dict.fromkeys(caps))


USE_ATTRIBUTES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    mailbox: bytes
    use: tuple[str, ...] = ()  # RFC 6154 §3; unknown attributes kept: NO [USEATTR]


def parse_create(args: Sequence[Token]) -> CreateRequest:
    """``mailbox [SP "(" create-param ")"]`` (RFC 4466 §2.2); only ``USE (...)`` known."""
    if not args or len(args) > 2:
        raise ImapSyntaxError("CREATE needs a mailbox and optional parameters")
    mailbox = parse_mailbox(args[0])
    if len(args) == 1:
        return CreateRequest(mailbox)
    params = paren_list(args[1])
    if len(params) != 2 or not isinstance(params[0], Atom) or params[0].value.upper() != "USE":
        raise ImapSyntaxError("unknown CREATE parameter")
    canonical = {a.upper(): a for a in USE_ATTRIBUTES}
    use: list[str] = []
    for t in paren_list(params[1]):  # RFC 6154 §6: "USE" SP "(" [use-attr *(SP use-attr)] ")"
        if (
            not isinstance(t, Atom)
            or not t.value.startswith("\\")
            or not ATOM_RE.fullmatch(t.value[1:])
        ):
            raise ImapSyntaxError("invalid special-use attribute")
        use.append(canonical.get(t.value.upper(), t.value))
    return CreateRequest(mailbox, tuple(dict.fromkeys(use)))


@dataclass(frozen=True, slots=True)
class CopyRequest:
    numbers: SequenceSet
    mailbox: bytes


def parse_copy(args: Sequence[Token]) -> CopyRequest:
    """COPY (§6.4.7) and MOVE (RFC 6851 §3.1): ``sequence-set SP mailbox``."""
    if len(args) != 2:
        raise ImapSyntaxError("expected a sequence set and a mailbox")
    return CopyRequest(parse_sequence_set(args[0]), parse_mailbox(args[1]))


ID_MAX_PAIRS, ID_MAX_FIELD, ID_MAX_VALUE = 30, 30, 1024  # RFC 2971 §3.3


def parse_id(args: Sequence[Token]) -> dict[str, bytes | None] | None:
    """RFC 2971 §4 ``ID ("(" string SP nstring *(SP string SP nstring) ")" / nil)``.

    Field names are case-insensitive (§3.3) and returned lower-cased; atoms are
    tolerated where the grammar wants strings.
    """
    if len(args) != 1:
        raise ImapSyntaxError("ID takes one argument")
    if is_nil(args[0]):
        return None
    toks = paren_list(args[0])
    if len(toks) % 2:
        raise ImapSyntaxError("ID needs field/value pairs")
    if len(toks) > 2 * ID_MAX_PAIRS:
        raise ImapSyntaxError("too many ID fields")
    out: dict[str, bytes | None] = {}
    for k, v in zip(toks[::2], toks[1::2], strict=True):
        key = astring(k)
        value = None if is_nil(v) else (astring(v) if isinstance(v, Atom) else nstring(v))
        if len(key) > ID_MAX_FIELD or (value is not None and len(value) > ID_MAX_VALUE):
            raise ImapSyntaxError("ID field or value too long")
        out[key.decode("utf-8", "replace").lower()] = value
    return out


def parse_getquotaroot(args: Sequence[Token]) -> bytes:
    """RFC 9208 §4.3 ``GETQUOTAROOT mailbox``."""
    if len(args) != 1:
        raise ImapSyntaxError("GETQUOTAROOT takes a mailbox")
    return parse_mailbox(args[0])


def parse_getquota(args: Sequence[Token]) -> bytes:
    """RFC 9208 §4.2 ``GETQUOTA quota-root`` (an astring; may be empty)."""
    if len(args) != 1:
        raise ImapSyntaxError("GETQUOTA takes a quota root")
    return astring(args[0])


# -- shared --


def parse_mailbox(tok: Token) -> bytes:
    """§9 ``mailbox = "INBOX" / astring``; a binary literal8 is not a mailbox name."""
    if isinstance(tok, String) and tok.binary:
        raise ImapSyntaxError("expected a mailbox name")
    return astring(tok)


def parse_sequence_set(tok: Token) -> SequenceSet:
    """§9 ``sequence-set`` (an atom), RFC 5182 ``$`` included."""
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("expected a sequence set")
    return SequenceSet.parse(tok.value)
