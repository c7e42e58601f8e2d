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

import re
from dataclasses import dataclass, field

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

MAX_DEPTH = 100  # Dovecot's default message_max_nested_mime_parts
MAX_PARTS = 10_000  # Dovecot's default message_max_total_mime_parts
_BOUNDARY_MAX = 70  # longer boundaries are truncated, as Dovecot does

_LWSP_RUN = re.compile(rb"[\r\n\t ]+")
_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')
_ATEXT_EXTRA = frozenset(b"!#$%&'*+-/=?^_`{|}~")


# =================================================================== IMAP string output


def _imap_string(value: bytes) -> bytes:
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


def _string_for_humans(value: bytes) -> bytes:
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


def _nstring_nolf(value: bytes | None) -> bytes:
    """Like Dovecot's imap_append_nstring_nolf: CR/LF removed (a space added if needed)."""
    if value is None:
        return b"NIL"
    if b"\r" not in value and b"\n" not in value:
        return _imap_string(value)
    out = bytearray()
    n = len(value)
    for i, b in enumerate(value):
        if b not in (0x0D, 0x0A):
            out.append(b)
        elif i + 1 < n and value[i + 1] not in b" \t\r\n":
            out.append(0x20)
    return _imap_string(bytes(out))


# =================================================================== RFC 822 tokens


class _Lexer:
    """A cursor over a header value, like Dovecot's rfc822-parser."""

    __slots__ = ("data", "end", "last_comment", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment = b""

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < self.end else -1

    def skip_lwsp(self) -> int:
        """Skip whitespace and comments: 1 if data remains, 0 at the end, -1 on a bad comment."""
        data, end = self.data, self.end
        while self.pos < end:
            c = data[self.pos]
            if c in (0x20, 0x09, 0x0D, 0x0A):
                self.pos += 1
            elif c == 0x28:  # (
                if not self._skip_comment():
                    return -1
            else:
                return 1
        return 0

    def _skip_comment(self) -> bool:
        data, end = self.data, self.end
        depth = 0
        out = bytearray()
        while self.pos < end:
            c = data[self.pos]
            if c == 0x28:
                depth += 1
                if depth > 1:
                    out.append(c)
            elif c == 0x29:
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    self.last_comment = bytes(out)
                    return True
                out.append(c)
            elif c == 0x5C and self.pos + 1 < end:
                self.pos += 1
                out.append(data[self.pos])
            elif c not in (0x0D, 0x0A):
                out.append(c)
            self.pos += 1
        return False

    def mime_token(self) -> bytes:
        data, end = self.data, self.end
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c in _TSPECIALS or c <= 0x20 or c == 0x7F:
                break
            self.pos += 1
        return data[start : self.pos]

    def atom(self, dots: bool = False) -> bytes:
        data, end = self.data, self.end
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if (
                (0x30 <= c <= 0x39)
                or (0x41 <= c <= 0x5A)
                or (0x61 <= c <= 0x7A)
                or c in _ATEXT_EXTRA
                or c >= 0x80
                or (dots and c == 0x2E)
            ):
                self.pos += 1
            else:
                break
        return data[start : self.pos]

    def quoted_string(self) -> bytes | None:
        """At a '"': the unquoted content, or None if unterminated."""
        data, end = self.data, self.end
        self.pos += 1
        out = bytearray()
        while self.pos < end:
            c = data[self.pos]
            if c == 0x22:
                self.pos += 1
                return bytes(out)
            if c == 0x5C and self.pos + 1 < end:
                self.pos += 1
                c = data[self.pos]
                out.append(c)
            elif c in (0x0D, 0x0A):
                pass
            else:
                out.append(c)
            self.pos += 1
        return None


def _is_atext(c: int) -> bool:
    return (
        (0x30 <= c <= 0x39)
        or (0x41 <= c <= 0x5A)
        or (0x61 <= c <= 0x7A)
        or c in _ATEXT_EXTRA
        or c >= 0x80
    )


# =================================================================== parameters (RFC 2045/2231)


def _content_param(lx: _Lexer) -> tuple[int, bytes, bytes]:
    """Dovecot's rfc822_parse_content_param: (1, key, value), (0, ...) at the end, -1 broken."""
    if lx.pos >= lx.end:
        return 0, b"", b""
    if lx.peek() != 0x3B:  # ;
        return -1, b"", b""
    lx.pos += 1
    if lx.skip_lwsp() <= 0:
        return -1, b"", b""
    key = lx.mime_token()
    if not key or lx.skip_lwsp() <= 0 or lx.peek() != 0x3D:  # =
        return -1, b"", b""
    lx.pos += 1
    ret = lx.skip_lwsp()
    value = b""
    if ret > 0:
        c = lx.peek()
        if c == 0x22:
            quoted = lx.quoted_string()
            if quoted is None:
                return -1, b"", b""
            value = quoted
            ret = lx.skip_lwsp()
        elif c == 0x3D:  # broken name==?utf-8?...
            start = lx.pos
            while lx.pos < lx.end and lx.data[lx.pos] not in b"; \t\r\n":
                lx.pos += 1
            value = lx.data[start : lx.pos]
        else:
            value = lx.mime_token()
            ret = lx.skip_lwsp()
    return (-1 if ret < 0 else 1), key, value


def _parse_params(lx: _Lexer) -> list[tuple[bytes, bytes]]:
    """``; key=value`` pairs after the current position, RFC 2231 continuations merged."""
    plain: list[tuple[bytes, bytes]] = []
    cont: list[tuple[bytes, int, bool, bytes]] = []  # key, index, extended, value
    while True:
        ret, key, value = _content_param(lx)
        if ret == 0:
            break
        if ret < 0:
            if lx.pos >= lx.end:
                break
            lx.pos += 1
            continue
        _add_param(key, value, plain, cont)
    if not cont:
        return plain
    cont.sort(key=lambda p: (p[0].lower(), p[1]))
    i = 0
    while i < len(cont):
        j = i
        ok = True
        extended = False
        idx = 0
        while j < len(cont) and cont[j][0].lower() == cont[i][0].lower():
            if cont[j][1] != idx:
                ok = False
            extended = extended or cont[j][2]
            idx += 1
            j += 1
        group = cont[i:j]
        i = j
        if not ok:
            for key, n, ext, value in group:
                plain.append((b"%s*%d*" % (key, n) if ext else b"%s*%d" % (key, n), value))
            continue
        out = bytearray()
        if extended and not group[0][2]:
            out += b"''"
        for _key, _n, ext, value in group:
            out += _rfc2231_escape(value) if extended and not ext else value
        plain.append((group[0][0] + b"*" if extended else group[0][0], bytes(out)))
    return plain


def _add_param(
    key: bytes,
    value: bytes,
    plain: list[tuple[bytes, bytes]],
    cont: list[tuple[bytes, int, bool, bytes]],
) -> None:
    star = key.find(b"*")
    if star < 0:
        plain.append((key, value))
        return
    rest = key[star + 1 :]
    if not rest:  # name*=charset'lang'value
        cont.append((key[:star], 0, True, value))
        return
    digits = 0
    while digits < len(rest) and 0x30 <= rest[digits] <= 0x39:
        digits += 1
    idx = int(rest[:digits]) if digits else 0
    tail = rest[digits:]
    if tail in (b"", b"*"):
        cont.append((key[:star], idx, tail == b"*", value))
    else:
        plain.append((key, value))


def _rfc2231_escape(value: bytes) -> bytes:
    return value.replace(b"%", b"%25")


def _params_out(params: list[tuple[bytes, bytes]] | None, default_charset: bool) -> bytes:
    if not params and not default_charset:
        return b"NIL"
    items = []
    seen_charset = False
    for key, value in params or ():
        if key.lower() == b"charset":
            seen_charset = True
        items.append(_imap_string(key) + b" " + _imap_string(value))
    if default_charset and not seen_charset:
        items.append(b'"charset" "us-ascii"')
    return b"(" + b" ".join(items) + b")"


# =================================================================== the MIME tree


@dataclass(slots=True, eq=False)
class MimePart:
    """One MIME part, with byte offsets into the raw message.

    ``raw[offset:body_offset]`` is the header block (with its blank line, if any) and
    ``raw[body_offset:end]`` the body. ``children`` holds the parts of a multipart, or the
    single encapsulated message of a message/rfc822 part.
    """

    offset: int
    body_offset: int = 0
    end: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    children: list[MimePart] = field(default_factory=list)
    multipart: bool = False
    rfc822: bool = False
    text: bool = False
    ctype: bytes | None = None
    subtype: bytes = b""
    params: list[tuple[bytes, bytes]] | None = None
    lines: int = 0
    defects: list[str] = field(default_factory=list)
    #: where BODY[n.MIME] / BODY[n.HEADER] end: body_offset, except when a boundary
    #: follows at once (its line end is then not part of the header, as in Dovecot)
    header_end: int = -1

    def header(self, name: bytes) -> bytes | None:
        """The first header ``name`` (case-insensitive), unfolded value with CRLFs kept."""
        lname = name.lower()
        for hname, value in self.headers:
            if hname.lower() == lname:
                return value
        return None


class _Parser:
    __slots__ = ("bounds", "data", "n", "nparts", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.pos = 0
        # active boundaries: (boundary, owner id)
        self.bounds: list[tuple[bytes, int]] = []
        self.nparts = 0

    # -------------------------------------------------------------- boundaries

    def _match(self, line_start: int) -> tuple[int, bool] | None:
        """If the line at ``line_start`` is a boundary of an open multipart: (owner, is_end)."""
        data = self.data
        if not self.bounds or not data.startswith(b"--", line_start):
            return None
        nl = data.find(b"\n", line_start)
        line_end = self.n if nl < 0 else nl
        if line_end > line_start and data[line_end - 1] == 0x0D:
            line_end -= 1
        body = data[line_start + 2 : line_end]
        best: tuple[bytes, int] | None = None
        for bound in reversed(self.bounds):
            if body.startswith(bound[0]) and (best is None or len(best[0]) < len(bound[0])):
                best = bound
                if len(bound[0]) == len(body):
                    break
        if best is None:
            return None
        return best[1], body[len(best[0]) : len(best[0]) + 2] == b"--"

    def _scan(self, pos: int) -> tuple[int, int, bool] | None:
        """The next boundary line at or after line start ``pos``: (line start, owner, end)."""
        if not self.bounds:
            return None
        data = self.data
        i = pos
        if not data.startswith(b"--", i):
            i = data.find(b"\n--", i)
            if i < 0:
                return None
            i += 1
        while True:
            m = self._match(i)
            # past MAX_PARTS only closing boundaries count (no new parts), as in Dovecot
            if m is not None and (m[1] or self.nparts < MAX_PARTS - 1):
                return i, m[0], m[1]
            i = data.find(b"\n--", i)
            if i < 0:
                return None
            i += 1

    def _body_end(self, body_start: int, line_start: int) -> int:
        """Body end before the boundary line at ``line_start`` (its CRLF belongs to it)."""
        end = line_start
        if end > body_start and self.data[end - 1] == 0x0A:
            end -= 1
            if end > body_start and self.data[end - 1] == 0x0D:
                end -= 1
        return end

    # -------------------------------------------------------------- headers

    def _headers(self, part: MimePart) -> tuple[int, int, bool] | None:
        """Read the header block at self.pos; a boundary inside it ends the part."""
        data, n = self.data, self.n
        pos = self.pos
        headers = part.headers
        while pos < n:
            if data[pos] in (0x20, 0x09) and headers:
                nl = data.find(b"\n", pos)
                stop = n if nl < 0 else nl + 1
                name, value = headers[-1]
                headers[-1] = (
                    name,
                    value
                    + data[
                        pos - 2 if data[pos - 2] == 0x0D else pos - 1 : _strip_eol(data, pos, stop)
                    ],
                )
                pos = stop
                continue
            if data[pos] == 0x0A or (data[pos] == 0x0D and pos + 1 < n and data[pos + 1] == 0x0A):
                pos += 1 if data[pos] == 0x0A else 2
                part.body_offset = pos
                self.pos = pos
                return None
            if self.bounds:
                m = self._match(pos)
                if m is not None:
                    # the line end before a boundary belongs to the boundary
                    part.body_offset = part.end = pos
                    part.header_end = self._body_end(part.offset, pos)
                    part.defects.append("boundary inside the header")
                    self.pos = pos
                    return pos, m[0], m[1]
            nl = data.find(b"\n", pos)
            stop = n if nl < 0 else nl + 1
            line_end = _strip_eol(data, pos, stop)
            colon = data.find(b":", pos, line_end)
            if colon < 0:
                part.defects.append("header line without colon")
                headers.append((data[pos:line_end].rstrip(b" \t"), b""))
            else:
                vstart = colon + 1
                while vstart < line_end and data[vstart] in (0x20, 0x09):
                    vstart += 1
                headers.append((data[pos:colon].rstrip(b" \t"), data[vstart:line_end]))
            pos = stop
        part.body_offset = n
        self.pos = n
        part.defects.append("no blank line after the header")
        return None

    # -------------------------------------------------------------- parts

    def part(self, depth: int, digest_child: bool) -> tuple[MimePart, tuple[int, int, bool] | None]:
        """Parse the part at self.pos; returns it and the boundary hit that ended it."""
        self.nparts += 1
        part = MimePart(self.pos)
        hit = self._headers(part)
        _content_type(part, digest_child)
        if hit is not None:
            if part.rfc822:  # an empty encapsulated message
                part.children.append(MimePart(part.end, part.end, part.end, text=True))
            return part, hit
        body_start = part.body_offset
        boundary = None
        if part.multipart:
            if depth + 1 >= MAX_DEPTH or self.nparts >= MAX_PARTS:
                _opaque(part)
            else:
                for key, value in part.params or ():
                    if key.lower() == b"boundary":
                        boundary = value[:_BOUNDARY_MAX]
                        break
        if part.rfc822 and (depth + 1 >= MAX_DEPTH or self.nparts >= MAX_PARTS):
            _opaque(part)
        if part.rfc822:
            child, hit = self.part(depth + 1, False)
            part.children.append(child)
            part.end = child.end
        elif part.multipart and boundary:
            hit = self._multipart(part, boundary, depth)
        else:
            hit = self._scan(body_start)
            if hit is None:
                part.end = self.n
            else:
                part.end = self._body_end(body_start, hit[0])
        if hit is not None:
            self.pos = hit[0]
            if hit[0] == body_start and part.header_end < 0:
                part.header_end = self._body_end(part.offset, body_start)
        else:
            self.pos = self.n
        part.lines = self.data.count(b"\n", body_start, part.end)
        return part, hit

    def _multipart(
        self, part: MimePart, boundary: bytes, depth: int
    ) -> tuple[int, int, bool] | None:
        owner = id(part)
        self.bounds.append((boundary, owner))
        digest = part.subtype.lower() == b"digest"
        epilogue = part.body_offset
        hit = self._scan(part.body_offset)
        while hit is not None and hit[1] == owner:
            if hit[2]:  # closing boundary: the rest is epilogue
                self.bounds.pop()
                nl = self.data.find(b"\n", hit[0])
                epilogue = self.n if nl < 0 else nl + 1
                hit = self._scan(epilogue) if nl >= 0 else None
                break
            nl = self.data.find(b"\n", hit[0])
            if nl < 0:
                self.pos = self.n
                part.children.append(MimePart(self.n, self.n, self.n))
                hit = None
                break
            self.pos = nl + 1
            if self.nparts >= MAX_PARTS:
                part.defects.append("too many parts")
                self.bounds.pop()
                hit = self._scan(self.pos)
                break
            child, hit = self.part(depth + 1, digest)
            part.children.append(child)
        else:
            self.bounds.pop()
            if not part.children:
                part.defects.append("no boundary found")
        if hit is None:
            part.end = self.n
        elif (
            epilogue == part.body_offset
            and part.children
            and (part.children[-1].body_offset == hit[0])
        ):
            # the last part's header ran up to the boundary: its line end stays in
            part.end = hit[0]
        else:
            part.end = self._body_end(epilogue, hit[0])
        return hit


def _opaque(part: MimePart) -> None:
    """Past the nesting/part limits a container becomes application/octet-stream (Dovecot)."""
    part.defects.append("too deeply nested / too many parts")
    part.multipart = part.rfc822 = part.text = False
    part.ctype, part.subtype = b"application", b"octet-stream"


def _strip_eol(data: bytes, start: int, stop: int) -> int:
    if stop > start and data[stop - 1] == 0x0A:
        stop -= 1
        if stop > start and data[stop - 1] == 0x0D:
            stop -= 1
    return stop


def _content_type(part: MimePart, digest_child: bool) -> None:
    value = part.header(b"content-type")
    if value is None:
        if digest_child:
            part.rfc822 = True
        else:
            part.text = True
        return
    lx = _Lexer(value)
    lx.skip_lwsp()
    ctype = lx.mime_token()
    subtype = b""
    ret = lx.skip_lwsp()
    ok = bool(ctype) and ret >= 0
    if ok and ret > 0:
        ok = lx.peek() == 0x2F  # /
        if ok:
            lx.pos += 1
            ok = lx.skip_lwsp() > 0
            if ok:
                subtype = lx.mime_token()
                ret = lx.skip_lwsp()
                ok = bool(subtype) and (ret == 0 or (ret > 0 and lx.peek() == 0x3B))
    if not ok:
        part.defects.append("bad Content-Type")
        part.ctype, part.subtype = b"", b""
        return
    part.ctype, part.subtype = ctype, subtype
    full = ctype.lower() + b"/" + subtype.lower()
    if full == b"message/rfc822":
        part.rfc822 = True
    elif ctype.lower() == b"text":
        part.text = True
    elif full.startswith(b"multipart/"):
        part.multipart = True
    part.params = _parse_params(lx)


def parse(raw: bytes) -> MimePart:
    """The MIME tree of ``raw``; never raises."""
    parser = _Parser(raw)
    root, _hit = parser.part(0, False)
    root.end = len(raw)
    root.lines = raw.count(b"\n", root.body_offset)
    return root


# =================================================================== ENVELOPE


_ENV_STRINGS = {b"date": 0, b"subject": 1, b"in-reply-to": 8, b"message-id": 9}
_ENV_ADDRS = {b"from": 2, b"sender": 3, b"reply-to": 4, b"to": 5, b"cc": 6, b"bcc": 7}

_Addr = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def _envelope_of(part: MimePart) -> bytes:
    fields: list[bytes | None] = [None] * 10
    addrs: list[list[_Addr] | None] = [None] * 10
    for name, value in part.headers:
        lname = name.lower()
        idx = _ENV_STRINGS.get(lname)
        if idx is not None:
            fields[idx] = value.replace(b"\0", b"\x80")
            continue
        idx = _ENV_ADDRS.get(lname)
        if idx is not None:
            parsed = _parse_addresses(value)
            have = addrs[idx]
            addrs[idx] = parsed if have is None else have + parsed
    subject = fields[1]
    out = [_nstring_nolf(fields[0]), b"NIL" if subject is None else _string_for_humans(subject)]
    for idx in range(2, 8):
        lst = addrs[idx]
        if idx in (3, 4) and not lst:
            lst = addrs[2]
        out.append(_addresses_out(lst))
    out.append(_nstring_nolf(fields[8]))
    out.append(_nstring_nolf(fields[9]))
    return b"(" + b" ".join(out) + b")"


def _addresses_out(lst: list[_Addr] | None) -> bytes:
    if not lst:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)"
            % (
                b"NIL" if addr[0] is None else _string_for_humans(addr[0]),
                _nstring_nolf(addr[1]),
                _nstring_nolf(addr[2]),
                _nstring_nolf(addr[3]),
            )
            for addr in lst
        )
        + b")"
    )


class _AddrParser:
    def __init__(self, value: bytes) -> None:
        self.lx = _Lexer(value)
        self.out: list[_Addr] = []

    def phrase(self) -> bytes | None:
        """1*word (atoms may contain dots): words joined by one space; None if none."""
        lx = self.lx
        words: list[bytes] = []
        while lx.pos < lx.end:
            c = lx.peek()
            if c == 0x22:
                q = lx.quoted_string()
                if q is None:
                    return None
                words.append(q)
            elif _is_atext(c) or c == 0x2E:
                words.append(lx.atom(dots=True))
            else:
                break
            if lx.skip_lwsp() < 0:
                return None
        if not words:
            return None
        return b" ".join(words)

    def parse_list(self) -> list[_Addr]:
        lx = self.lx
        if lx.skip_lwsp() <= 0:
            return self.out
        while lx.pos < lx.end:
            start = lx.pos
            if not self.group():
                lx.pos = start
                self.mailbox()
            if lx.pos >= lx.end:
                break
            if lx.peek() != 0x2C:
                # garbage: skip to the next comma
                nxt = lx.data.find(b",", lx.pos)
                if nxt < 0:
                    break
                lx.pos = nxt
            lx.pos += 1
            if lx.skip_lwsp() <= 0:
                break
        return self.out

    def group(self) -> bool:
        lx = self.lx
        name = self.phrase()
        if name is None or lx.peek() != 0x3A:
            return False
        lx.pos += 1
        self.out.append((None, None, name, None))
        ret = lx.skip_lwsp()
        if ret > 0 and lx.peek() != 0x3B:
            while True:
                self.mailbox()
                if lx.pos >= lx.end or lx.peek() != 0x2C:
                    break
                lx.pos += 1
                if lx.skip_lwsp() <= 0:
                    break
        if lx.peek() == 0x3B:
            lx.pos += 1
            lx.skip_lwsp()
        self.out.append((None, None, None, None))
        return True

    def mailbox(self) -> None:
        lx = self.lx
        start = lx.pos
        addr = self.name_addr()
        if addr is None:
            lx.pos = start
            addr = self.addr_spec()
        name, route, box, host = addr
        if box is None:
            box = b"MISSING_MAILBOX"
        if not host:
            host = b"MISSING_DOMAIN"
        self.out.append((name, route, box, host))

    def name_addr(self) -> _Addr | None:
        lx = self.lx
        name = None
        if lx.peek() != 0x3C:
            name = self.phrase()
            if name is None or lx.peek() != 0x3C:
                return None
        lx.pos += 1
        if lx.skip_lwsp() <= 0:
            return None
        route = None
        if lx.peek() == 0x40:
            start = lx.pos
            colon = lx.data.find(b":", lx.pos)
            gt = lx.data.find(b">", lx.pos)
            if colon < 0 or (0 <= gt < colon):
                return None
            route = lx.data[start:colon].replace(b" ", b"")
            lx.pos = colon + 1
            lx.skip_lwsp()
        _, _, box, host = self.addr_spec(in_angle=True)
        if lx.peek() != 0x3E:
            return None
        lx.pos += 1
        lx.skip_lwsp()
        return (name, route, box, host)

    def addr_spec(self, in_angle: bool = False) -> _Addr:
        lx = self.lx
        lx.last_comment = b""
        box = self.local_part()
        host: bytes | None = None
        name: bytes | None = None
        if lx.peek() == 0x40:
            lx.pos += 1
            lx.skip_lwsp()
            host = self.domain()
        if not in_angle and lx.last_comment:
            name = lx.last_comment
        elif not in_angle and host is None and box is not None:
            # "user" alone is a mailbox, but "Some Name" (more words) is a display name
            more = self.phrase()
            if more:
                return (box + b" " + more, None, None, None)
        return (name, None, box, host)

    def local_part(self) -> bytes | None:
        lx = self.lx
        words: list[bytes] = []
        while lx.pos < lx.end:
            c = lx.peek()
            if c == 0x22:
                q = lx.quoted_string()
                if q is None:
                    break
                words.append(q)
            elif _is_atext(c):
                words.append(lx.atom())
            else:
                break
            lx.skip_lwsp()
            if lx.peek() != 0x2E:
                break
            lx.pos += 1
            words.append(b".")
            lx.skip_lwsp()
        if not words:
            return None
        return b"".join(words)

    def domain(self) -> bytes | None:
        lx = self.lx
        if lx.peek() == 0x5B:
            close = lx.data.find(b"]", lx.pos)
            if close < 0:
                close = lx.end - 1
            out = lx.data[lx.pos : close + 1]
            lx.pos = close + 1
            lx.skip_lwsp()
            return out
        words: list[bytes] = []
        while lx.pos < lx.end:
            atom = lx.atom()
            if not atom:
                break
            words.append(atom)
            lx.skip_lwsp()
            if lx.peek() != 0x2E:
                break
            lx.pos += 1
            words.append(b".")
            lx.skip_lwsp()
        return b"".join(words) if words else None


def _parse_addresses(value: bytes) -> list[_Addr]:
    return _AddrParser(value).parse_list()


def envelope(raw: bytes) -> bytes:
    """FETCH ENVELOPE of the message, e.g. ``b'("date" "subj" ((...)) ... NIL "<id>")'``."""
    return _envelope_of(parse(raw))


# =================================================================== BODY / BODYSTRUCTURE

_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def body_size(raw: bytes, part: MimePart) -> int:
    """Octets of the part's body as sent (bare LFs count as CRLF, like Dovecot)."""
    size = part.end - part.body_offset
    bare = raw.count(b"\n", part.body_offset, part.end) - raw.count(
        b"\r\n", part.body_offset, part.end
    )
    return size + bare


def _write(raw: bytes, part: MimePart, ext: bool, out: list[bytes]) -> None:
    if part.multipart:
        if part.children:
            for child in part.children:
                out.append(b"(")
                _write(raw, child, ext, out)
                out.append(b")")
        else:
            out.append(_EMPTY_BODYSTRUCTURE if ext else _EMPTY_BODY)
        out.append(b" " + _imap_string(part.subtype))
        if ext:
            out.append(b" " + _params_out(part.params, False))
            _write_common(part, out)
        return
    if part.rfc822:
        out.append(b'"message" "rfc822"')
        text = False
    elif part.ctype is None:
        out.append(b'"text" "plain"')
        text = True
    else:
        text = part.ctype.lower() == b"text"
        out.append(_imap_string(part.ctype) + b" " + _imap_string(part.subtype))
    out.append(b" " + _params_out(part.params, text))
    cte = part.header(b"content-transfer-encoding")
    encoding = None
    if cte is not None:
        lx = _Lexer(cte)
        lx.skip_lwsp()
        token = lx.mime_token()
        if token and lx.skip_lwsp() == 0:
            encoding = token
    out.append(
        b" %s %s %s %d"
        % (
            _nstring_nolf(part.header(b"content-id")),
            _nstring_nolf(part.header(b"content-description")),
            b'"7bit"' if encoding is None else _imap_string(encoding),
            body_size(raw, part),
        )
    )
    if text:
        out.append(b" %d" % part.lines)
    elif part.rfc822:
        child = part.children[0]
        out.append(b" " + _envelope_of(child) + b" (")
        _write(raw, child, ext, out)
        out.append(b") %d" % part.lines)
    if ext:
        out.append(b" " + _nstring_nolf(part.header(b"content-md5")))
        _write_common(part, out)


def _write_common(part: MimePart, out: list[bytes]) -> None:
    disp = part.header(b"content-disposition")
    disp_out = b"NIL"
    if disp is not None:
        lx = _Lexer(disp)
        lx.skip_lwsp()
        token = lx.mime_token()
        if token:
            lx.skip_lwsp()
            params = _parse_params(lx)
            disp_out = b"(" + _imap_string(token) + b" " + _params_out(params, False) + b")"
    lang = part.header(b"content-language")
    lang_out = b"NIL"
    if lang is not None:
        lx = _Lexer(lang)
        lx.skip_lwsp()
        langs: list[bytes] = []
        while True:
            atom = lx.atom()
            if not atom:
                break
            langs.append(atom)
            lx.skip_lwsp()
            if lx.peek() != 0x2C:
                break
            lx.pos += 1
            lx.skip_lwsp()
        if langs:
            lang_out = b"(" + b" ".join(_imap_string(x) for x in langs) + b")"
    out.append(b" %s %s %s" % (disp_out, lang_out, _nstring_nolf(part.header(b"content-location"))))


def bodystructure(raw: bytes, extensible: bool = True) -> bytes:
    """FETCH BODYSTRUCTURE (``extensible=False``: FETCH BODY) of the message."""
    out: list[bytes] = [b"("]
    _write(raw, parse(raw), extensible, out)
    out.append(b")")
    return b"".join(out)


# =================================================================== BODY[section]


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A FETCH ``BODY[...]`` section, as the FETCH parser should produce it.

    ``part``: the part numbers (``BODY[1.2.MIME]`` → ``(1, 2)``; top level → ``()``).
    ``kind``: ``""`` (whole part / whole message), ``"HEADER"``, ``"HEADER.FIELDS"``,
    ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"`` (upper case; MIME needs a part).
    ``fields``: the header names for HEADER.FIELDS[.NOT], in any case.
    """

    part: tuple[int, ...] = ()
    kind: str = ""
    fields: tuple[str, ...] = ()


def _find_part(root: MimePart, path: tuple[int, ...]) -> MimePart | None:
    """RFC 3501 §6.4.5 part numbering, as Dovecot's imap_msgpart_find."""
    part: MimePart | None = root
    for i, num in enumerate(path):
        if part is None:
            return None
        more = i + 1 < len(path)
        if part.multipart:
            part = part.children[num - 1] if 0 < num <= len(part.children) else None
        elif num != 1 or (more and not part.rfc822):
            part = None
        if part is not None and part.rfc822 and more:
            part = part.children[0] if part.children else None
    return part


def _header_fields(raw: bytes, part: MimePart, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    data = raw[part.offset : _header_end(part)]
    out = bytearray()
    pos, n = 0, len(data)
    include = False
    while pos < n:
        nl = data.find(b"\n", pos)
        stop = n if nl < 0 else nl + 1
        line = data[pos:stop]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] not in (b" ", b"\t") or pos == 0:
            colon = line.find(b":")
            name = (line if colon < 0 else line[:colon]).rstrip(b" \t\r\n").lower()
            include = (name in wanted) == keep
        if include:
            out += line if line.endswith(b"\n") else line + b"\r\n"
        pos = stop
    # Dovecot ends HEADER.FIELDS with a blank line always, HEADER.FIELDS.NOT only when
    # the header had one
    if keep or data.endswith((b"\r\n\r\n", b"\n\n")) or data in (b"\r\n", b"\n"):
        out += b"\r\n"
    return bytes(out)


def _header_end(part: MimePart) -> int:
    return part.body_offset if part.header_end < 0 else part.header_end


def section(raw: bytes, spec: SectionSpec, partial: tuple[int, int] | None = None) -> bytes | None:
    """The bytes of ``BODY[spec]`` (``partial=(offset, length)`` for ``<offset.length>``).

    Returns None when the section does not exist (a part number past the end, or
    HEADER/TEXT of a part that is not message/rfc822); the FETCH code may then send
    an empty string, as Dovecot does.
    """
    root = parse(raw)
    part = _find_part(root, spec.part)
    if part is None:
        return None
    kind = spec.kind.upper()
    if kind == "MIME":
        if not spec.part:
            return None
        data = raw[part.offset : _header_end(part)]
    elif kind == "":
        data = raw[part.body_offset : part.end] if spec.part else raw
    else:
        if spec.part:
            if not part.rfc822 or not part.children:
                return None
            part = part.children[0]
        if kind == "HEADER":
            data = raw[part.offset : _header_end(part)]
        elif kind == "TEXT":
            data = raw[part.body_offset : part.end]
        elif kind == "HEADER.FIELDS":
            data = _header_fields(raw, part, spec.fields, True)
        elif kind == "HEADER.FIELDS.NOT":
            data = _header_fields(raw, part, spec.fields, False)
        else:
            return None
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")  # NUL cannot be sent in a literal; as Dovecot
    if partial is not None:
        start, length = partial
        data = data[start : start + length]
    return data
