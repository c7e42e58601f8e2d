"""IMAP response encoder (RFC 3501 §7, §9): status lines, response codes, data values.

Every function returns complete ``bytes``; lines end in CRLF. Value mapping for
:func:`encode_value`: ``None`` → NIL, ``int`` → number, ``str``/``bytes`` → string
(quoted, or a literal when needed), :class:`Atom` → as-is (flags, keywords),
:class:`Binary` → literal8 (RFC 3516), lists/tuples → parenthesised lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.imap.wire.mutf7 import decode_mutf7, encode_mutf7
from mailwarden.imap.wire.tokens import Atom

__all__ = [
    "CRLF",
    "Binary",
    "Code",
    "Value",
    "continuation",
    "decode_mailbox",
    "decode_mutf7",
    "encode_astring",
    "encode_list",
    "encode_mailbox",
    "encode_mutf7",
    "encode_nstring",
    "encode_string",
    "encode_value",
    "fetch_response",
    "status",
    "untagged",
]

CRLF = b"\r\n"
MAX_QUOTED = 1024  # longer strings go out as literals
_STATUSES = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
# §9 quoted: TEXT-CHAR = any CHAR (0x01-0x7f) except CR and LF.
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_QUOTABLE_UTF8 = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\xff]*")
# §9 ASTRING-CHAR: ATOM-CHAR / "]" — no atom-specials, no 8-bit.
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_ESCAPE = re.compile(rb'(["\\])')
_TEXT_BAD = re.compile(r"[\x00\r\n]")
_CODE_ATOM = re.compile(r"[^\x00-\x20\x7f\]()]+")


@dataclass(frozen=True, slots=True)
class Binary:
    """Content sent as literal8 ``~{n}`` (RFC 3516 §4.2, may contain NUL)."""

    data: bytes


Value = None | int | str | bytes | Atom | Binary | Sequence["Value"]


def encode_string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A §9 string: quoted when it can be, else a literal (CR/LF, NUL, 8-bit, long).

    With ``utf8`` (RFC 6855 UTF8=ACCEPT enabled) valid UTF-8 may be quoted.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and _quotable(data, utf8):
        return b'"' + _ESCAPE.sub(rb"\\\1", data) + b'"'  # §4.3: escape " and \
    return b"{%d}\r\n" % len(data) + data  # §4.3 literal


def _quotable(data: bytes, utf8: bool) -> bool:
    if _QUOTABLE.fullmatch(data):
        return True
    if not utf8 or _QUOTABLE_UTF8.fullmatch(data) is None:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An astring: a bare atom when every character allows it, else a string."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if _ASTRING_ATOM.fullmatch(data):
        return data
    return encode_string(data, utf8=utf8)


def encode_nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """An nstring (§9): NIL or a string."""
    return b"NIL" if value is None else encode_string(value, utf8=utf8)


def encode_value(value: Value, *, utf8: bool = False) -> bytes:
    """Encode a response data value; see the module docstring for the mapping."""
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("IMAP numbers are unsigned")
        return b"%d" % value
    if isinstance(value, str | bytes):
        return encode_string(value, utf8=utf8)
    if isinstance(value, Atom):
        return value.value.encode("ascii")
    if isinstance(value, Binary):
        return b"~{%d}\r\n" % len(value.data) + value.data
    return encode_list(value, utf8=utf8)


def encode_list(values: Sequence[Value], *, utf8: bool = False) -> bytes:
    """A parenthesised list (§4.4)."""
    return b"(" + b" ".join(encode_value(v, utf8=utf8) for v in values) + b")"


@dataclass(frozen=True, slots=True, init=False)
class Code:
    """A response code (§7.1), e.g. ``Code("UIDNEXT", 5)`` → ``[UIDNEXT 5]``.

    Arguments: ``int`` → number, ``str`` → atom (``Code("APPENDUID", 38505, "3955")``,
    flags, capability names), ``bytes`` → string, sequences → lists.
    """

    name: str
    args: tuple[int | str | bytes | Sequence[int | str | bytes], ...] = ()

    def __init__(self, name: str, *args: int | str | bytes | Sequence[int | str | bytes]):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)

    def encode(self) -> bytes:
        parts = [_code_atom(self.name), *(_code_arg(a) for a in self.args)]
        return b"[" + b" ".join(parts) + b"]"


def _code_arg(arg: int | str | bytes | Sequence[int | str | bytes]) -> bytes:
    if isinstance(arg, str):
        return _code_atom(arg)
    if isinstance(arg, int | bytes):
        return encode_value(arg)
    return b"(" + b" ".join(_code_arg(a) for a in arg) + b")"


def _code_atom(text: str) -> bytes:
    if _CODE_ATOM.fullmatch(text) is None:
        raise ValueError(f"not an atom for a response code: {text!r}")
    return text.encode("ascii")


def status(
    tag: str | None, kind: str, text: str, code: Code | None = None, *, utf8: bool = False
) -> bytes:
    """``tag OK [CODE] text`` (§7.1); ``tag=None`` gives the untagged ``* OK ...``."""
    if kind not in _STATUSES:
        raise ValueError(f"unknown status {kind!r}")
    head = (tag or "*").encode("ascii") + b" " + kind.encode("ascii") + b" "
    if code is not None:
        head += code.encode() + b" "
    return head + _resp_text(text, utf8) + CRLF


def _resp_text(text: str, utf8: bool) -> bytes:
    """§9 text = 1*TEXT-CHAR: no CR/LF (7-bit unless UTF8=ACCEPT, RFC 6855 §3)."""
    clean = _TEXT_BAD.sub(" ", text) or "done"
    return clean.encode("utf-8") if utf8 else clean.encode("ascii", "replace")


def untagged(*parts: bytes) -> bytes:
    """``* part part ...`` CRLF, e.g. ``untagged(b"3", b"EXISTS")``."""
    return b"* " + b" ".join(parts) + CRLF


def continuation(text: str = "Ready for literal data") -> bytes:
    """A command continuation request ``+ text`` (§7.5)."""
    return b"+ " + _resp_text(text, False) + CRLF


def fetch_response(seq: int, items: Sequence[tuple[str, Value]], *, utf8: bool = False) -> bytes:
    """``* seq FETCH (NAME value ...)`` (§7.4.2); names are response names (``BODY[]<0>``)."""
    body = b" ".join(
        name.encode("ascii") + b" " + encode_value(value, utf8=utf8) for name, value in items
    )
    return b"* %d FETCH (" % seq + body + b")" + CRLF


def encode_mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name for a response: modified UTF-7 (§5.1.3), or UTF-8 (RFC 6855 §3)."""
    return encode_astring(name if utf8 else encode_mutf7(name), utf8=utf8)


def decode_mailbox(raw: bytes, *, utf8: bool = False) -> str:
    """A client's mailbox argument (astring bytes) → name; raises ValueError if invalid."""
    if utf8:
        return raw.decode("utf-8")  # RFC 6855 §3: names are UTF-8 once enabled
    return decode_mutf7(raw.decode("ascii"))
