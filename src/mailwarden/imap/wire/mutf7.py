"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII (0x20-0x7e) stands for itself, except ``&`` which is ``&-``; any
other run of characters is UTF-16BE in modified BASE64 (``,`` for ``/``, no padding)
between ``&`` and ``-``. Decoding is strict: only the canonical form is accepted, so
one mailbox has exactly one wire spelling.
"""

from __future__ import annotations

import base64
import re

_RUNS = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")
_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name; raises ValueError on lone surrogates."""
    out: list[str] = []
    for m in _RUNS.finditer(name):
        run = m.group()
        if "\x20" <= run[0] <= "\x7e":
            out.append(run.replace("&", "&-"))  # §5.1.3: "&" is represented as "&-"
        else:
            raw = base64.b64encode(run.encode("utf-16-be"))
            out.append("&" + raw.rstrip(b"=").replace(b"/", b",").decode("ascii") + "-")
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """Decode a modified UTF-7 name; raises ValueError unless it is canonical."""
    if _PRINTABLE.fullmatch(text) is None:
        raise ValueError("mailbox name is not modified UTF-7 (8-bit or control characters)")
    decoded = _SHIFTED.sub(_unshift, text)
    # §5.1.3: printable characters MUST NOT be encoded, shifted runs MUST be merged
    # and padding bits must be zero: the canonical re-encoding catches all of them,
    # as well as a stray "&".
    if encode_mutf7(decoded) != text:
        raise ValueError("mailbox name is not canonical modified UTF-7")
    return decoded


def _unshift(m: re.Match[str]) -> str:
    body = m.group(1)
    if not body:
        return "&"
    raw = base64.b64decode(body.replace(",", "/") + "=" * (-len(body) % 4), validate=True)
    return raw.decode("utf-16-be")  # odd length or bad surrogates: UnicodeDecodeError
