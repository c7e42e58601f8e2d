"""RFC 3516 BINARY: FETCH BINARY[part] / BINARY.SIZE[part] content, decoded as Dovecot 2.3 does.

:func:`binary_section` returns the Content-Transfer-Encoding-decoded bytes of a section
and whether they must go out as a ``literal8`` (``~{n}``, RFC 3516 §4.2). It follows
Dovecot's ``index-mail-binary.c`` (checked against a real Dovecot 2.3.19 by
tests/integration/test_imap_fetch_dovecot.py):

* ``BINARY[n]`` of a leaf: its body decoded (base64, quoted-printable; 7bit, 8bit, binary
  and a missing header: unchanged). The **last** Content-Transfer-Encoding header counts;
  a folded one, an empty one or an unknown token raises :class:`UnknownCte` (§4.3).
* ``BINARY[]`` and ``BINARY[n]`` of a multipart or message/rfc822 part: the section with
  every leaf inside decoded and, for each decoded part, its Content-Transfer-Encoding
  header replaced by ``Content-Transfer-Encoding: binary`` at the end of its header.
  If no leaf was decoded, the section's original bytes are sent unchanged.
* literal8 when anything was decoded or a NUL was seen (in a header of the section or
  a 7bit/8bit/binary body); otherwise a plain literal with NUL sent as 0x80.
* Encoded data that does not decode (Dovecot's decoders are strict: bad characters,
  missing or misplaced base64 padding, ``=`` not followed by two hex digits or a line
  end, a bare CR, 77+ blanks inside a line) raises :class:`InvalidContent`.

Decoding never expands data (base64 and quoted-printable only shrink), and every copy is
bounded by the size of the section.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from mailwarden.imap.mimetree import MimePart
from mailwarden.imap.rfc822lex import Lexer
from mailwarden.imap.sections import find_part  # RFC 3501 §6.4.5 numbering

__all__ = [
    "BinaryData",
    "InvalidContent",
    "UnknownCte",
    "binary_section",
    "decode_base64",
    "decode_qp",
    "find_part",
    "transfer_encoding",
]


class UnknownCte(Exception):
    """RFC 3516 §4.3: a BINARY section with a Content-Transfer-Encoding we cannot decode.

    The session answers ``NO [UNKNOWN-CTE] <str(exc)>``.
    """


class InvalidContent(UnknownCte):
    """The section's encoded data is invalid (Dovecot: "Invalid data in MIME part").

    Dovecot 2.3.19 answers ``NO [PARSE]``, later versions ``NO [UNKNOWN-CTE]``; either
    way the client should fall back to BODY[] and decode it itself.
    """


CTE_78BIT = "7bit"  # also 8bit and a missing header
CTE_BINARY = "binary"
CTE_QP = "quoted-printable"
CTE_BASE64 = "base64"
_CTES = {
    b"7bit": CTE_78BIT,
    b"8bit": CTE_78BIT,
    b"binary": CTE_BINARY,
    b"quoted-printable": CTE_QP,
    b"base64": CTE_BASE64,
}
_CTE_HEADER = b"content-transfer-encoding"
_BINARY_HEADER = b"Content-Transfer-Encoding: binary\r\n"

_B64_SPACE = b" \t\r\n"  # skipped by Dovecot's base64 decoder; anything else is data
# quoted-printable (RFC 2045 §6.7) as Dovecot's qp-decoder.c accepts it
_QP_INVALID = re.compile(
    rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n)"  # "=" not followed by 2 hex digits / a soft break
    rb"|\r(?!\n)"  # bare CR
    rb"|[ \t]{77,}(?=[^ \t\r\n])"  # more blanks than a 76-character line can hold
)
_QP_TRAILING = re.compile(rb"[ \t]+(?=\r?\n|\Z)")  # rule 3: trailing blanks are dropped
_QP_BARE_LF = re.compile(rb"(?<!\r)\n")
_LINES = re.compile(rb"[^\n]*\n|[^\n]+")  # header lines, each with its line end


@dataclass(frozen=True, slots=True)
class BinaryData:
    """A decoded section: its bytes, and whether they go out as literal8 (``~{n}``)."""

    data: bytes
    literal8: bool


def transfer_encoding(part: MimePart) -> str:
    """The part's CTE for decoding; raises :class:`UnknownCte` (RFC 3516 §4.3).

    As Dovecot's message_decoder_parse_cte: the last header wins; it must be one known
    MIME token (case-insensitive, comments allowed around it); a folded header never is.
    """
    cte: str | None = CTE_78BIT
    for name, value in part.headers:
        if name.lower() == _CTE_HEADER:
            cte = _parse_cte(value)
    if cte is None:
        raise UnknownCte("Unknown Content-Transfer-Encoding.")
    return cte


def _parse_cte(value: bytes) -> str | None:
    if b"\n" in value:  # Dovecot reads only the first line and gets nothing for the rest
        return None
    lx = Lexer(value)
    lx.skip_lwsp()
    token = lx.mime_token()
    if lx.skip_lwsp() != 0:  # anything but comments after the token: unknown
        return None
    return _CTES.get(token.lower())


def decode_base64(data: bytes) -> bytes:
    """RFC 2045 §6.8 base64: blanks and line breaks skipped, strict otherwise."""
    compact = data.translate(None, _B64_SPACE)
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as exc:
        raise InvalidContent(f"Invalid data in MIME part: base64: {exc}") from None


def decode_qp(data: bytes) -> bytes:
    """RFC 2045 §6.7 quoted-printable with CRLF line ends, as Dovecot's qp-decoder."""
    bad = _QP_INVALID.search(data)
    if bad is not None:
        raise InvalidContent(f"Invalid data in MIME part: quoted-printable at {bad.start()}")
    data = _QP_TRAILING.sub(b"", data)
    if b"\n" in data and data.count(b"\n") != data.count(b"\r\n"):
        data = _QP_BARE_LF.sub(b"\r\n", data)  # a hard line break is always CRLF
    # every "=" is now "=XX" or a soft line break: a2b_qp decodes exactly those
    return binascii.a2b_qp(data)


class _Builder:
    """Dovecot's add_binary_part: copy unconverted bytes, decode the leaves."""

    __slots__ = ("converted", "copy_start", "nuls", "out", "raw", "view")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.view = memoryview(raw)
        self.out: list[bytes | memoryview] = []
        self.copy_start = 0
        self.converted = False
        self.nuls = False

    def copy_to(self, end: int) -> None:
        if end > self.copy_start:
            self.out.append(self.view[self.copy_start : end])

    def add(self, part: MimePart, include_hdr: bool) -> None:
        raw = self.raw
        cte = transfer_encoding(part)
        if raw.find(b"\0", part.offset, part.body_offset) >= 0:
            self.nuls = True  # "not converting NULs to 0x80 even if in the header"
        # Dovecot's header size stops before a line end that belongs to a boundary
        header_end = part.body_offset if part.header_end < 0 else part.header_end
        part_end = header_end + (part.end - part.body_offset)
        if include_hdr:
            if cte in (CTE_QP, CTE_BASE64):
                if self.copy_start:
                    self.copy_to(part.offset)
                self.out.append(_binary_header(raw[part.offset : part.body_offset]))
            else:
                self.copy_to(header_end)
        self.copy_start = header_end
        if part.children:  # multipart, or the message inside a message/rfc822
            for child in part.children:
                self.add(child, True)
            self.copy_to(part_end)
        elif part.end > part.body_offset:
            self._leaf(part, cte)
        self.copy_start = part_end

    def _leaf(self, part: MimePart, cte: str) -> None:
        if cte == CTE_QP:
            self.out.append(decode_qp(self.raw[part.body_offset : part.end]))
            self.converted = True
        elif cte == CTE_BASE64:
            self.out.append(decode_base64(self.raw[part.body_offset : part.end]))
            self.converted = True
        else:
            if self.raw.find(b"\0", part.body_offset, part.end) >= 0:
                self.nuls = True
            self.out.append(self.view[part.body_offset : part.end])


def _binary_header(header: bytes) -> bytes:
    """The header without Content-Transfer-Encoding, then ``...: binary`` before the blank line."""
    out: list[bytes] = []
    skipping = False
    blank = b""
    for line in _LINES.findall(header):
        if line in (b"\r\n", b"\n"):
            blank = b"\r\n"
            break
        if line[:1] not in (b" ", b"\t"):  # a new field; else a folded line of the last one
            name = line.split(b":", 1)[0] if b":" in line else line.rstrip(b"\r\n")
            skipping = name.rstrip(b" \t").lower() == _CTE_HEADER
        if not skipping:
            out.append(line)
    out.append(_BINARY_HEADER)
    out.append(blank)
    return b"".join(out)


def binary_section(raw: bytes, root: MimePart, part: tuple[int, ...]) -> BinaryData:
    """``BINARY[part]`` of the message ``raw`` parsed as ``root`` (``()`` = whole message).

    A part that does not exist gives empty data (as Dovecot). Raises :class:`UnknownCte`
    or :class:`InvalidContent`.
    """
    target = root if not part else find_part(root, part)
    if target is None:
        return BinaryData(b"", False)
    include_hdr = not part  # BINARY[] includes the header (RFC 3516 §4.1, as BODY[])
    builder = _Builder(raw)
    builder.add(target, include_hdr)
    if builder.converted:
        data = b"".join(builder.out)
    else:  # nothing decoded: Dovecot sends the original bytes, header untouched
        data = raw[target.offset if include_hdr else target.body_offset : target.end]
    literal8 = builder.converted or builder.nuls
    if not literal8 and b"\0" in data:
        data = data.replace(b"\0", b"\x80")  # a literal cannot carry NUL (RFC 3501 §4.3)
    return BinaryData(data, literal8)
