"""MIME structure for IMAP FETCH: ENVELOPE, BODY/BODYSTRUCTURE and BODY[section] bytes.

Pure functions over the raw bytes of one message (CRLF line ends, as stored). The MIME
tree is parsed with bytes operations, so every part knows its exact offsets::

    envelope(raw)                      -> b'("date" "subject" (("Name" NIL "box" "host")) ...)'
    bodystructure(raw)                 -> b'("text" "plain" ("charset" "us-ascii") ... NIL)'
    bodystructure(raw, extensible=False)  # FETCH BODY (no extension data)
    section(raw, SectionSpec((1, 2), "MIME"))           -> the bytes of BODY[1.2.MIME]
    section(raw, SectionSpec((), "HEADER.FIELDS", ("From", "To")), partial=(0, 100))

The output mirrors Dovecot 2.3 byte for byte wherever that was checked
(tests/integration/test_imap_mime_dovecot.py): strings are quoted, or sent as literals
when they contain 8-bit bytes, CR/LF or more than four quote/backslash characters; type,
subtype, parameter names and values keep their case; RFC 2047 words stay encoded; RFC 2231
continuations are joined (``name*0*=`` ... -> ``"name*" "charset'lang'%xx..."``, still
percent-encoded); a text part without charset gets ``("charset" "us-ascii")``.

Parsing never raises: malformed input yields a best-effort tree (see :attr:`MimePart.defects`),
nesting deeper than :data:`MAX_DEPTH` is treated as an opaque body, and at most
:data:`MAX_PARTS` parts are made per message.
"""

from __future__ import annotations

from mailwarden.imap.bodystructure import body_size, bodystructure
from mailwarden.imap.envelope import envelope
from mailwarden.imap.mimetree import MAX_DEPTH, MAX_PARTS, MimePart, parse
from mailwarden.imap.sections import SectionSpec, section

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "MimePart",
    "SectionSpec",
    "body_size",
    "bodystructure",
    "envelope",
    "parse",
    "section",
]
