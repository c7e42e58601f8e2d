"""FETCH BODY and BODYSTRUCTURE (RFC 3501 §7.4.2), as Dovecot writes them."""

from __future__ import annotations

from collections.abc import Callable

from mailwarden.imap.envelope import envelope_of
from mailwarden.imap.imapstr import imap_string, nstring_nolf
from mailwarden.imap.mimetree import MimePart, parse
from mailwarden.imap.rfc822lex import Lexer, parse_params

__all__ = ["body_size", "bodystructure"]

_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _params_out(params: list[tuple[bytes, bytes]] | None, default_charset: bool) -> bytes:
    if not params and not default_charset:
        return b"NIL"
    items = []
    seen_charset = False
    for key, value in params or ():
        if key.lower() == b"charset":
            seen_charset = True
        items.append(imap_string(key) + b" " + imap_string(value))
    if default_charset and not seen_charset:
        items.append(b'"charset" "us-ascii"')
    return b"(" + b" ".join(items) + b")"


def body_size(raw: bytes, part: MimePart) -> int:
    """Octets of the part's body as sent (bare LFs count as CRLF, like Dovecot)."""
    size = part.end - part.body_offset
    bare = raw.count(b"\n", part.body_offset, part.end) - raw.count(
        b"\r\n", part.body_offset, part.end
    )
    return size + bare


def _content_header(part: MimePart, message: bool) -> Callable[[bytes], bytes | None]:
    """Header lookup for the Content-* fields of ``part``.

    Like Dovecot: a message header (the top level, or an encapsulated message) with
    neither MIME-Version nor Content-Type is not MIME (RFC 2045 §4), so its other
    Content-* fields are ignored.
    """
    if message and part.header(b"mime-version") is None and part.header(b"content-type") is None:
        return lambda _name: None
    return part.header


def write_body(
    raw: bytes, part: MimePart, ext: bool, out: list[bytes], message: bool = True
) -> None:
    """BODY (``ext=False``) or BODYSTRUCTURE of ``part`` appended to ``out`` as pieces."""
    header = _content_header(part, message)
    if part.multipart:
        if part.children:
            for child in part.children:
                out.append(b"(")
                write_body(raw, child, ext, out, message=False)
                out.append(b")")
        else:
            out.append(_EMPTY_BODYSTRUCTURE if ext else _EMPTY_BODY)
        out.append(b" " + imap_string(part.subtype))
        if ext:
            out.append(b" " + _params_out(part.params, False))
            _write_common(header, out)
        return
    if part.rfc822:
        out.append(b'"message" "rfc822"')
        text = False
    elif part.ctype is None:
        out.append(b'"text" "plain"')
        text = True
    else:
        text = part.ctype.lower() == b"text"
        out.append(imap_string(part.ctype) + b" " + imap_string(part.subtype))
    out.append(b" " + _params_out(part.params, text))
    cte = header(b"content-transfer-encoding")
    encoding = None
    if cte is not None:
        lx = Lexer(cte)
        lx.skip_lwsp()
        token = lx.mime_token()
        if token and lx.skip_lwsp() == 0:
            encoding = token
    out.append(
        b" %s %s %s %d"
        % (
            nstring_nolf(header(b"content-id")),
            nstring_nolf(header(b"content-description")),
            b'"7bit"' if encoding is None else imap_string(encoding),
            body_size(raw, part),
        )
    )
    if text:
        out.append(b" %d" % part.lines)
    elif part.rfc822:
        child = part.children[0]
        out.append(b" " + envelope_of(child) + b" (")
        write_body(raw, child, ext, out)
        out.append(b") %d" % part.lines)
    if ext:
        out.append(b" " + nstring_nolf(header(b"content-md5")))
        _write_common(header, out)


def _write_common(header: Callable[[bytes], bytes | None], out: list[bytes]) -> None:
    disp = header(b"content-disposition")
    disp_out = b"NIL"
    if disp is not None:
        lx = Lexer(disp)
        lx.skip_lwsp()
        token = lx.mime_token()
        if token:
            lx.skip_lwsp()
            params = parse_params(lx)
            disp_out = b"(" + imap_string(token) + b" " + _params_out(params, False) + b")"
    lang = header(b"content-language")
    lang_out = b"NIL"
    if lang is not None:
        lx = Lexer(lang)
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
            lang_out = b"(" + b" ".join(imap_string(x) for x in langs) + b")"
    out.append(b" %s %s %s" % (disp_out, lang_out, nstring_nolf(header(b"content-location"))))


def bodystructure(raw: bytes, extensible: bool = True) -> bytes:
    """FETCH BODYSTRUCTURE (``extensible=False``: FETCH BODY) of the message."""
    out: list[bytes] = [b"("]
    write_body(raw, parse(raw), extensible, out)
    out.append(b")")
    return b"".join(out)
