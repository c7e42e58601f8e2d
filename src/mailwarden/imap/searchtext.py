"""The text the IMAP search index keeps per message: its header fields and body text.

Each stored message is turned into two strings once, when it is indexed, so that SEARCH
HEADER/FROM/SUBJECT/BODY/TEXT (RFC 3501 §6.4.4) never read message files::

    headers, body = extract(raw)
    header_values(headers, "subject")  -> ["Hello"]

``headers`` has one ``Name: value\\n`` line per header field of the top-level message, in
order, every field kept: folding removed (RFC 5322 §2.2.3), 8-bit bytes read as UTF-8
(RFC 6532) except runs that are not valid UTF-8, read as Latin-1 (old mailers wrote raw
Latin-1; U+FFFD would make such names unsearchable), RFC 2047 encoded words decoded.
Lines whose name is not a valid field name (RFC 5322 §3.6.8 ftext, at most 998 bytes:
e.g. a colon-less garbage line or an mbox ``From `` line) are left out: SEARCH HEADER
cannot name them anyway.

``body`` is the decoded text (Content-Transfer-Encoding and charset) of every text/*
leaf part, joined with ``\\n``, line ends as ``\\n``; text attachments count, and so do the
text parts of attached message/rfc822 messages (not their header fields). A multipart
whose boundary never occurs is read as text, as mail clients show it. Non-text parts
(images, PDFs, ...), preambles and epilogues are left out. text/html is reduced to its
text (tags, comments, scripts and styles removed, entities decoded) so that searching for
a word does not match markup; the regexes used are linear (none can backtrack over the
rest of the part), which is simpler and several times faster than an HTML parser and
good enough for substring search.

Charsets: a known charset (UTF-8 included) is decoded with ``errors="replace"``. A part
without charset, with us-ascii (8-bit bytes under us-ascii are common in real mail) or
with a charset Python does not know is read as UTF-8 if it is valid UTF-8, else as
Latin-1 as a whole (per part: cheap even on 8-bit garbage), which never fails. Codecs
that are not mail charsets (``idna``, ``punycode``, ``unicode_escape``, ...) count as
unknown.

Nothing here raises on malformed input, and the work is bounded: the MIME tree comes from
the lenient :func:`mailwarden.imap.mimetree.parse` (part count and depth limited; a
top-level header longer than about ``8 * max_header_chars`` bytes is cut before parsing),
at most ``12 * max_body_chars`` raw bytes of a part are decoded and at most ``16 *
max_body_chars`` raw bytes per message, and both strings are truncated at their caps.
NUL characters, which PostgreSQL text cannot store, become U+FFFD.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import html
import re

from mailwarden.imap.mimetree import MimePart, parse

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_HEADER_CHARS",
    "decode_words",
    "extract",
    "header_values",
    "lookup_charset",
]

MAX_BODY_CHARS = 1_000_000  # default cap on body text per message
MAX_HEADER_CHARS = 256_000  # default cap on header text per message

_RAW_PER_CHAR = 12  # raw bytes decoded per wanted char (QP x3 times UTF-8 x4)
_RAW_PER_MESSAGE = 16  # raw bytes decoded per message, per char of max_body_chars
_HEADER_RAW_PER_CHAR = 8  # raw header bytes read per char still wanted

_FIELD_NAME = re.compile(rb"[!-9;-~]{1,998}")  # RFC 5322 §3.6.8 ftext, §2.1.1 line length
_FOLD = re.compile(rb"\r?\n")  # RFC 5322 §2.2.3: unfolding removes the CRLF only
_CTE = re.compile(rb"[\s(]*([A-Za-z0-9-]+)")
# RFC 2047 §2: encoded-word = "=?" charset ["*" language (RFC 2231 §5)] "?" encoding "?"
# encoded-text "?="; tokens are printable ASCII without "?" (and without spaces).
_EWORD = re.compile(r"=\?([!->@-~]+)\?([BbQq])\?([!->@-~]*)\?=")
_SPACE = re.compile(r"[ \t]*")
_NOT_B64 = bytes(c for c in range(256) if not (chr(c).isalnum() and c < 128) and c not in b"+/=")
_NOT_MAIL_CODECS = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "mbcs", "oem"}
)
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")
_LATIN1_RUNS = "mailwarden-searchtext-latin1"  # codecs error handler name (registered below)
_ASCII = "ascii"  # us-ascii parts are read with the UTF-8 / Latin-1 fallback

# text/html: comments, scripts and styles go whole (to the end if unterminated, so the
# lazy scan never restarts); block tags become line breaks, other tags vanish (so that
# "<b>Amazon</b>.com" stays "Amazon.com"). No pattern can rescan past the next "<".
_HTML_DROP = re.compile(
    r"<!--.*?(?:-->|\Z)|<(script|style)\b.*?(?:</\1\s*>|\Z)", re.DOTALL | re.IGNORECASE
)
_HTML_BLOCK = re.compile(  # the look-ahead rejects "<x" at once (20x faster on "<<<<")
    r"</?(?=[abdhlopstuABDHLOPSTU])(?:p|div|br|hr|li|ul|ol|tr|td|th|table|h[1-6]"
    r"|blockquote|pre|title|section|article|header|footer|dd|dt)\b[^<>]*>",
    re.IGNORECASE,
)
_HTML_TAG = re.compile(r"</?[A-Za-z!?][^<>]*>")


# =================================================================== charsets


@functools.lru_cache(maxsize=256)
def lookup_charset(name: str) -> str | None:
    """The Python codec for a MIME charset name, or None if unknown / not a mail charset."""
    try:
        info = codecs.lookup(name.strip().strip("\"'"))
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CODECS:
        return None
    return info.name


def _decode_text(data: bytes, charset: str | None, cut: bool = False) -> str:
    """``data`` in ``charset``; none, us-ascii or unknown: UTF-8 if valid, else Latin-1.

    ``cut``: ``data`` was cut by a size cap, so a character may be cut off at its end.
    """
    codec = lookup_charset(charset) if charset else None
    if codec is not None and codec != _ASCII:
        try:
            return data.decode(codec, "replace")
        except (UnicodeError, LookupError, ValueError, TypeError):
            pass  # a codec that fails even with errors="replace": use the fallback
    return _utf8_or_latin1(data, cut)


def _latin1_run(exc: UnicodeError) -> tuple[str, int]:
    """Error handler: the run of 8-bit bytes at an invalid UTF-8 byte, read as Latin-1
    (one call per run, not per byte, so 8-bit garbage stays cheap)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    m = _HIGH_RUN.match(exc.object, exc.start)
    end = m.end() if m else exc.end
    return exc.object[exc.start : end].decode("latin-1"), end


codecs.register_error(_LATIN1_RUNS, _latin1_run)


def _header_str(raw: bytes) -> str:
    """A header value: UTF-8 (RFC 6532), bytes that are not UTF-8 read as Latin-1."""
    return raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", _LATIN1_RUNS)


def _utf8_or_latin1(data: bytes, cut: bool) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cut and exc.reason == "unexpected end of data":
            try:
                return data[: exc.start].decode("utf-8")
            except UnicodeDecodeError:
                pass
        return data.decode("latin-1")


# =================================================================== transfer encodings


def _decode_base64(data: bytes) -> bytes:
    """Lenient base64: characters outside the alphabet ignored, the data ends at the first
    "=" (RFC 2045 §6.8), a cut-off last quantum repaired; never raises."""
    clean = data.translate(None, _NOT_B64)
    pad = clean.find(b"=")
    if pad >= 0:
        clean = clean[:pad]
    usable = len(clean) - 1 if len(clean) % 4 == 1 else len(clean)
    return binascii.a2b_base64(clean[:usable] + b"=" * (-usable % 4)) if usable else b""


def _transfer_decode(data: bytes, cte: bytes | None) -> bytes:
    m = _CTE.match(cte) if cte else None
    kind = m.group(1).lower() if m else b""
    if kind == b"base64":
        return _decode_base64(data)
    if kind == b"quoted-printable":  # RFC 2045 §6.7; a2b_qp is lenient
        return binascii.a2b_qp(data)
    return data  # 7bit, 8bit, binary and unknown encodings: as they are


# =================================================================== headers


def decode_words(value: str) -> str:
    """RFC 2047 decoding that never raises.

    Whitespace between adjacent encoded words is dropped (§6.2), and adjacent words in one
    charset are decoded together, so a character split across two words survives. A word
    in an unknown charset is read as UTF-8 / Latin-1.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    run: bytearray | None = None
    run_charset = ""
    for m in _EWORD.finditer(value):
        gap = value[pos : m.start()]
        if run is not None and _SPACE.fullmatch(gap) is None:
            out.append(_decode_text(bytes(run), run_charset))
            run = None
        if run is None:
            out.append(gap)
        charset = m.group(1).partition("*")[0]  # RFC 2231 §5: charset*language
        text = m.group(3).encode("ascii")
        data = _decode_base64(text) if m.group(2) in "Bb" else binascii.a2b_qp(text, header=True)
        if run is not None and charset.lower() != run_charset.lower():
            out.append(_decode_text(bytes(run), run_charset))
            run = None
        if run is None:
            run, run_charset = bytearray(), charset
        run += data
        pos = m.end()
    if run is not None:
        out.append(_decode_text(bytes(run), run_charset))
    out.append(value[pos:])
    return "".join(out)


def _clean_line(text: str) -> str:
    """One header line: no CR/LF (the format is line based), no NUL (PostgreSQL)."""
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return text.replace("\0", "\ufffd") if "\0" in text else text


def _header_text(fields: list[tuple[bytes, bytes]], cap: int) -> str:
    lines: list[str] = []
    size = 0
    for name, value in fields:
        if size >= cap:
            break
        if _FIELD_NAME.fullmatch(name) is None:
            continue
        raw = _FOLD.sub(b"", value[: (cap - size) * _HEADER_RAW_PER_CHAR]).rstrip(b" \t\r")
        text = _header_str(raw)
        line = f"{name.decode('ascii')}: {_clean_line(decode_words(text))}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)[:cap]


def header_values(headers: str, name: str) -> list[str]:
    """The values of every field ``name`` (any case) in an :func:`extract` headers text."""
    want = name.lower()
    values = []
    for line in headers.split("\n"):
        key, colon, value = line.partition(":")
        if colon and key.lower() == want:
            values.append(value.removeprefix(" "))
    return values


# =================================================================== body


def _html_text(text: str) -> str:
    text = _HTML_DROP.sub("", text)
    text = _HTML_BLOCK.sub("\n", text)
    text = html.unescape(_HTML_TAG.sub("", text))
    # runs of white space (&nbsp; included) become one space, blank lines go; str.split
    # rather than a regex like r"\s*\n", which is quadratic on a long run of spaces
    return "\n".join(" ".join(words) for words in map(str.split, text.split("\n")) if words)


def _param(part: MimePart, key: bytes) -> str | None:
    for k, v in part.params or ():
        if k.lower() == key:
            return v.decode("ascii", "replace")
    return None


def _part_text(raw: bytes, part: MimePart, limit: int) -> str:
    """The decoded text of one text/* leaf, from at most ``limit`` raw bytes."""
    end = min(part.end, part.body_offset + limit)
    data = _transfer_decode(raw[part.body_offset : end], part.header(b"content-transfer-encoding"))
    text = _decode_text(data, _param(part, b"charset"), cut=end < part.end)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.subtype.lower() == b"html":
        text = _html_text(text)
    return text.replace("\0", "\ufffd") if "\0" in text else text


def _text_leaves(root: MimePart) -> list[MimePart]:
    """The text/* leaves in document order, message/rfc822 contents included (no recursion).

    A multipart whose boundary never occurs has no parts: its body is read as text, as
    mail clients show it.
    """
    leaves: list[MimePart] = []
    stack = [root]
    while stack:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
        elif part.text or part.multipart:
            leaves.append(part)
    return leaves


def _body_text(raw: bytes, root: MimePart, cap: int) -> str:
    texts: list[str] = []
    size = 0
    budget = cap * _RAW_PER_MESSAGE
    for part in _text_leaves(root):
        if size >= cap or budget <= 0:
            break
        limit = min(budget, (cap - size) * _RAW_PER_CHAR)
        budget -= min(limit, part.end - part.body_offset)
        text = _part_text(raw, part, limit)
        if text:
            texts.append(text)
            size += len(text) + 1
    return "\n".join(texts)[:cap]


def _trim_header(raw: bytes, limit: int) -> bytes:
    """``raw`` with its top-level header cut to about ``limit`` bytes (at a line end).

    The MIME parser spends about a microsecond per header line: a 50 MB header block
    would cost seconds, and only ``max_header_chars`` of it are kept anyway.
    """
    if len(raw) <= limit:
        return raw
    blanks = [i + 1 for i in (raw.find(b"\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    end = min(blanks) if blanks and not raw.startswith((b"\r\n", b"\n")) else len(raw)
    if raw.startswith((b"\r\n", b"\n")) or end <= limit:
        return raw
    cut = raw.rfind(b"\n", 0, limit) + 1
    head = raw[:cut] if cut else raw[:limit] + b"\r\n"
    return head + raw[end:]


def extract(
    raw: bytes,
    *,
    max_body_chars: int = MAX_BODY_CHARS,
    max_header_chars: int = MAX_HEADER_CHARS,
) -> tuple[str, str]:
    """``(headers, body)`` search text of one message (see the module docstring)."""
    raw = _trim_header(raw, max(0, max_header_chars) * _HEADER_RAW_PER_CHAR + 4096)
    root = parse(raw)
    headers = _header_text(root.headers, max(0, max_header_chars))
    body = _body_text(raw, root, max(0, max_body_chars))
    return headers, body
