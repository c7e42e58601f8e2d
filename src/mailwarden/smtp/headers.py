"""Pure header surgery on raw messages before they are stored."""

from __future__ import annotations

import re

_AR = re.compile(rb"^authentication-results:[ \t]*([^;\s]+)", re.I)


def strip_forged_results(raw: bytes, authserv_id: str) -> bytes:
    """RFC 8601 §5: remove Authentication-Results fields claiming to be ours.

    Only the header section is touched; folded continuation lines go with their field.
    """
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[: end + 2], raw[end + 2 :])
    if b"uthentication-" not in head and b"UTHENTICATION-" not in head:
        return raw
    ours = authserv_id.lower().encode()
    out: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        m = _AR.match(line)
        dropping = bool(m and m.group(1).lower() == ours)
        if not dropping:
            out.append(line)
    return b"\r\n".join(out) + body
