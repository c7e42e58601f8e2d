"""IMAP string output for FETCH responses, as Dovecot writes it.

Quoted strings, or literals for 8-bit bytes, CR/LF or more than four quote/backslash
characters; NIL for a missing nstring.
"""

from __future__ import annotations

import re

__all__ = ["imap_string", "nstring_nolf", "string_for_humans"]

_LWSP_RUN = re.compile(rb"[\r\n\t ]+")


def imap_string(value: bytes) -> bytes:
    """A quoted string, or a literal for 8-bit, CR/LF or more than four quote/backslashes."""
    escapes = 0
    for b in value:
        if b in (0x22, 0x5C):
            escapes += 1
            if escapes > 4:
                return b"{%d}\r\n%s" % (len(value), value)
        elif b in (0x0D, 0x0A) or b >= 0x80:
            return b"{%d}\r\n%s" % (len(value), value)
    if escapes:
        value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + value + b'"'


def string_for_humans(value: bytes) -> bytes:
    """Dovecot's imap_append_string_for_humans (ENVELOPE subject and display names).

    Whitespace runs (CR, LF, TAB, SP) become one space and are trimmed at both ends, NUL
    becomes 0x80; a value that needed any change, or has quotes, backslashes or 8-bit
    bytes, is sent as a literal.
    """
    if not value:
        return b'""'
    if (
        b"\t" not in value
        and b"\r" not in value
        and b"\n" not in value
        and b"  " not in value
        and b'"' not in value
        and b"\\" not in value
        and b"\0" not in value
        and value[0] != 0x20
        and value[-1] != 0x20
        and value.isascii()
    ):
        return b'"' + value + b'"'
    cleaned = _LWSP_RUN.sub(b" ", value.replace(b"\0", b"\x80")).strip(b" ")
    if not cleaned:
        return b'""'
    return b"{%d}\r\n%s" % (len(cleaned), cleaned)


def nstring_nolf(value: bytes | None) -> bytes:
    """Like Dovecot's imap_append_nstring_nolf: CR/LF removed (a space added if needed)."""
    if value is None:
        return b"NIL"
    if b"\r" not in value and b"\n" not in value:
        return imap_string(value)
    out = bytearray()
    n = len(value)
    for i, b in enumerate(value):
        if b not in (0x0D, 0x0A):
            out.append(b)
        elif i + 1 < n and value[i + 1] not in b" \t\r\n":
            out.append(0x20)
    return imap_string(bytes(out))
