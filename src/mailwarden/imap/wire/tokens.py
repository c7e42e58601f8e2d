"""Command argument tokens (RFC 3501 §4) and small accessors for command parsers.

The reader keeps tokens close to the wire: an atom stays an :class:`Atom` even when it
looks like a number or ``NIL``, because whether ``NIL`` is a mailbox name or a null
depends on the grammar position. The accessors below apply the grammar.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.core.errors import MailwardenError

MAX_NUMBER = 2**32 - 1  # RFC 3501 §9: number / nz-number are unsigned 32-bit
MAX_NUMBER64 = 2**63 - 1  # RFC 7162 §7: mod-sequence-value


class ImapSyntaxError(MailwardenError, ValueError):
    """A command argument does not match the grammar; the message is the BAD text."""


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom (RFC 3501 §4.1), as sent; may contain ``[``, ``]``, ``\\``, ``%`` and ``*``."""

    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string (§4.3) or literal (§4.3, RFC 3516 literal8 when ``binary``)."""

    value: bytes
    literal: bool = False
    binary: bool = False


@dataclass(frozen=True, slots=True)
class ParenList:
    """A parenthesised list (§4.4)."""

    items: tuple[Token, ...]


Token = Atom | String | ParenList


def is_nil(tok: Token) -> bool:
    """``NIL`` (§4.5) — only meaningful where the grammar allows nstring."""
    return isinstance(tok, Atom) and tok.value.upper() == "NIL"


def parse_number(text: str, *, nonzero: bool = False, limit: int = MAX_NUMBER) -> int:
    """``number`` / ``nz-number`` (§9), bounded; raises :class:`ImapSyntaxError`."""
    # isdigit() alone accepts non-ASCII digits; isascii() keeps it to 0-9.
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        raise ImapSyntaxError(f"invalid number: {text[:32]!r}")
    n = int(text)
    if n > limit or (nonzero and n == 0):
        raise ImapSyntaxError(f"number out of range: {text}")
    return n


def number(tok: Token, *, nonzero: bool = False, limit: int = MAX_NUMBER) -> int:
    """A number argument; raises :class:`ImapSyntaxError`."""
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("expected a number")
    return parse_number(tok.value, nonzero=nonzero, limit=limit)


def astring(tok: Token) -> bytes:
    """An astring (§9: atom or string) as raw bytes; raises :class:`ImapSyntaxError`."""
    if isinstance(tok, String):
        return tok.value
    if isinstance(tok, Atom):
        return tok.value.encode("ascii")
    raise ImapSyntaxError("expected an atom or string")


def nstring(tok: Token) -> bytes | None:
    """An nstring (§9: string or NIL)."""
    if is_nil(tok):
        return None
    if isinstance(tok, String):
        return tok.value
    raise ImapSyntaxError("expected a string or NIL")


def atom(tok: Token) -> str:
    """An atom, upper-cased (keywords); raises :class:`ImapSyntaxError`."""
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("expected an atom")
    return tok.value.upper()


def paren_list(tok: Token) -> tuple[Token, ...]:
    """The items of a parenthesised list; raises :class:`ImapSyntaxError`."""
    if not isinstance(tok, ParenList):
        raise ImapSyntaxError("expected a parenthesised list")
    return tok.items
