"""FETCH ENVELOPE (RFC 3501 §7.4.2), with Dovecot's address parsing and output."""

from __future__ import annotations

from mailwarden.imap.imapstr import nstring_nolf, string_for_humans
from mailwarden.imap.mimetree import MimePart, parse
from mailwarden.imap.rfc822lex import Lexer, is_atext

__all__ = ["envelope", "envelope_of"]


_ENV_STRINGS = {b"date": 0, b"subject": 1, b"in-reply-to": 8, b"message-id": 9}
_ENV_ADDRS = {b"from": 2, b"sender": 3, b"reply-to": 4, b"to": 5, b"cc": 6, b"bcc": 7}

_Addr = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def envelope_of(part: MimePart) -> bytes:
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
    out = [nstring_nolf(fields[0]), b"NIL" if subject is None else string_for_humans(subject)]
    for idx in range(2, 8):
        lst = addrs[idx]
        if idx in (3, 4) and not lst:
            lst = addrs[2]
        out.append(_addresses_out(lst))
    out.append(nstring_nolf(fields[8]))
    out.append(nstring_nolf(fields[9]))
    return b"(" + b" ".join(out) + b")"


def _addresses_out(lst: list[_Addr] | None) -> bytes:
    if not lst:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)"
            % (
                b"NIL" if addr[0] is None else string_for_humans(addr[0]),
                nstring_nolf(addr[1]),
                nstring_nolf(addr[2]),
                nstring_nolf(addr[3]),
            )
            for addr in lst
        )
        + b")"
    )


class _AddrParser:
    def __init__(self, value: bytes) -> None:
        self.lx = Lexer(value)
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
            elif is_atext(c) or c == 0x2E:
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
            elif is_atext(c):
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
    return envelope_of(parse(raw))
