"""RFC 822 header-value tokens and RFC 2045/2231 parameters, like Dovecot's rfc822-parser.

Shared by the MIME tree parser (Content-Type), ENVELOPE (addresses) and BODYSTRUCTURE
(Content-Transfer-Encoding, Content-Disposition, Content-Language).
"""

from __future__ import annotations

__all__ = ["Lexer", "is_atext", "parse_params"]

_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')
_ATEXT_EXTRA = frozenset(b"!#$%&'*+-/=?^_`{|}~")


# =================================================================== RFC 822 tokens


class Lexer:
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


def is_atext(c: int) -> bool:
    return (
        (0x30 <= c <= 0x39)
        or (0x41 <= c <= 0x5A)
        or (0x61 <= c <= 0x7A)
        or c in _ATEXT_EXTRA
        or c >= 0x80
    )


# =================================================================== parameters (RFC 2045/2231)


def _content_param(lx: Lexer) -> tuple[int, bytes, bytes]:
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


def parse_params(lx: Lexer) -> list[tuple[bytes, bytes]]:
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
