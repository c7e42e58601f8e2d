"""The lenient MIME tree parser: every part knows its exact byte offsets in the message.

Parsing never raises: malformed input yields a best-effort tree (see :attr:`MimePart.defects`),
nesting deeper than :data:`MAX_DEPTH` is treated as an opaque body, and at most
:data:`MAX_PARTS` parts are made per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwarden.imap.rfc822lex import Lexer, parse_params

__all__ = ["MAX_DEPTH", "MAX_PARTS", "MimePart", "parse"]

MAX_DEPTH = 100  # Dovecot's default message_max_nested_mime_parts
MAX_PARTS = 10_000  # Dovecot's default message_max_total_mime_parts
_BOUNDARY_MAX = 70  # longer boundaries are truncated, as Dovecot does


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
    lx = Lexer(value)
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
    part.params = parse_params(lx)


def parse(raw: bytes) -> MimePart:
    """The MIME tree of ``raw``; never raises."""
    parser = _Parser(raw)
    root, _hit = parser.part(0, False)
    root.end = len(raw)
    root.lines = raw.count(b"\n", root.body_offset)
    return root
