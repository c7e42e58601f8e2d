"""FETCH BODY[section]<partial> bytes (RFC 3501 §6.4.5), as Dovecot cuts them."""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.imap.mimetree import MimePart, parse

__all__ = ["SectionSpec", "section"]


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


def find_part(root: MimePart, path: tuple[int, ...]) -> MimePart | None:
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


def header_fields(raw: bytes, part: MimePart, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    data = raw[part.offset : header_end(part)]
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


def header_end(part: MimePart) -> int:
    return part.body_offset if part.header_end < 0 else part.header_end


def section(raw: bytes, spec: SectionSpec, partial: tuple[int, int] | None = None) -> bytes | None:
    """The bytes of ``BODY[spec]`` (``partial=(offset, length)`` for ``<offset.length>``).

    Returns None when the section does not exist (a part number past the end, or
    HEADER/TEXT of a part that is not message/rfc822); the FETCH code may then send
    an empty string, as Dovecot does.
    """
    root = parse(raw)
    part = find_part(root, spec.part)
    if part is None:
        return None
    kind = spec.kind.upper()
    if kind == "MIME":
        if not spec.part:
            return None
        data = raw[part.offset : header_end(part)]
    elif kind == "":
        data = raw[part.body_offset : part.end] if spec.part else raw
    else:
        if spec.part:
            if not part.rfc822 or not part.children:
                return None
            part = part.children[0]
        if kind == "HEADER":
            data = raw[part.offset : header_end(part)]
        elif kind == "TEXT":
            data = raw[part.body_offset : part.end]
        elif kind == "HEADER.FIELDS":
            data = header_fields(raw, part, spec.fields, True)
        elif kind == "HEADER.FIELDS.NOT":
            data = header_fields(raw, part, spec.fields, False)
        else:
            return None
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")  # NUL cannot be sent in a literal; as Dovecot
    if partial is not None:
        start, length = partial
        data = data[start : start + length]
    return data
