"""Reading a message's header section: leniently, raw values, the body never parsed."""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import Compat32


class _RawPolicy(Compat32):
    """compat32 that hands header values back exactly as parsed (never Header objects).

    8-bit bytes come back as surrogate escapes (``str.encode("utf-8", "surrogateescape")``
    recovers them).
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _RawPolicy()
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def read_headers(message: bytes) -> list[tuple[str, str]]:
    """The header fields as (name, raw value) pairs, in order; the body is not parsed."""
    if message.startswith((b"\r\n", b"\n")):
        return []
    end = _HEADER_END.search(message)
    head = message if end is None else message[: end.start()]
    return list(BytesHeaderParser(policy=_RAW).parsebytes(head).items())
