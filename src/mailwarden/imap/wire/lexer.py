"""Tokenizer for one IMAP command, fed line segment by line segment (RFC 3501 §4, §9).

A command line is split by literals into segments; :class:`CommandLexer` keeps the open
parenthesised lists between segments, so a literal can sit anywhere in the argument
tree. Scanning is one compiled regex match per token, never a Python loop per byte,
and nesting uses an explicit stack (no recursion). Framing (CRLF, literal bytes,
limits on sizes) is the reader's job.

Brackets: like Dovecot, ``[`` and ``]`` are atom characters, so
``BODY[HEADER.FIELDS (A B)]<0.10>`` arrives as the atom ``BODY[HEADER.FIELDS``, the list
``(A B)`` and the atom ``]<0.10>``; the FETCH parser joins them (``fetch.py``). That
keeps quoted or literal header names (astrings) working inside the section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwarden.imap.wire.tokens import Atom, ParenList, String, Token

# Tag (§9): 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR = ATOM-CHAR / "]".
_TAG_CHARS = rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+'
# Command name: an atom (§9 atom-specials excluded, "]" too).
_NAME_CHARS = rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+'
_HEAD = re.compile(rb"(" + _TAG_CHARS + rb")(?:( )(" + _NAME_CHARS + rb")?)?")
TAG_PREFIX = re.compile(rb"(" + _TAG_CHARS + rb") ")

_QCHARS = rb'[^"\\\r\n\x00]'
_QUOTED_BODY = _QCHARS + rb"*(?:\\[\"\\]" + _QCHARS + rb"*)*"  # unrolled: no backtracking
_TOKEN = re.compile(
    rb"(?P<sp>\x20+)"
    # §4.3 literal "{n}", RFC 7888 "{n+}", RFC 3516 literal8 "~{n}"; ends the segment.
    rb"|(?P<literal>(?P<l8>~)?\{(?P<lsize>[0-9]+)(?P<lplus>\+)?\}\Z)"
    # Lenient atom: RFC 3501 ATOM-CHAR plus "%", "*" (list-wildcards, sequence sets),
    # "\" (flags, §9 flag-extension) and "]" (resp-specials, sections).
    rb'|(?P<atom>[^\x00-\x20\x7f-\xff(){"]+)'
    rb"|(?P<open>\()"
    rb"|(?P<close>\))"
    rb'|"(?P<quoted>' + _QUOTED_BODY + rb')"'  # §4.3 quoted, \" and \\ escapes only
)
_QUOTED_PREFIX = re.compile(rb'"' + _QUOTED_BODY)
_UNESCAPE = re.compile(rb'\\(["\\])')
MAX_LITERAL_DIGITS = 20

_START, _SEP, _VALUE, _CLOSE = range(4)  # what came before the next token


class LexError(Exception):
    """The command is malformed; ``reason`` is the text for ``tag BAD reason``."""

    def __init__(self, reason: str, tag: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tag = tag


@dataclass(frozen=True, slots=True)
class LiteralHeader:
    """A literal announced at the end of a segment."""

    size: int
    sync: bool  # False for RFC 7888 "{n+}"
    binary: bool  # RFC 3516 "~{n}"


def parse_head(text: bytes) -> tuple[str, str, int]:
    """``tag SP command-name`` (§9 command); returns tag, upper-cased name, end offset."""
    if not text:
        raise LexError("empty command line")
    m = _HEAD.match(text)
    if m is None:
        raise LexError("missing or invalid tag")
    tag = m.group(1).decode("ascii")
    if m.group(2) is None:
        if m.end() == len(text):
            raise LexError("missing command name", tag)
        raise LexError("invalid tag", None)
    name = m.group(3)
    end = m.end()
    if name is None or (end < len(text) and text[end] != 0x20):
        raise LexError("invalid command name", tag)
    return tag, name.decode("ascii").upper(), end


class CommandLexer:
    """Argument tokens of one command; call :meth:`scan` per segment, then :meth:`finish`."""

    __slots__ = ("_count", "_max_depth", "_max_tokens", "_prev", "_stack")

    def __init__(self, max_depth: int, max_tokens: int) -> None:
        self._stack: list[list[Token]] = [[]]
        self._prev = _VALUE  # the command name: a SP must follow
        self._count = 0
        self._max_depth = max_depth
        self._max_tokens = max_tokens

    def scan(self, text: bytes, pos: int) -> LiteralHeader | None:
        """Tokenize ``text[pos:]``; a trailing literal header is returned, not consumed."""
        match = _TOKEN.match
        end = len(text)
        while pos < end:
            m = match(text, pos)
            if m is None:
                raise LexError(_why(text, pos))
            kind = m.lastgroup
            if kind == "sp":
                self._prev = _SEP
            elif kind == "close":
                self._close()
            elif kind == "literal":
                return self._literal_header(m)
            else:
                self._value(kind, m)
            pos = m.end()
        return None

    def add_literal(self, value: bytes, binary: bool) -> None:
        """The literal announced by :meth:`scan` has arrived."""
        self._push(String(value, literal=True, binary=binary))
        self._prev = _VALUE

    def finish(self) -> list[Token]:
        if len(self._stack) > 1:
            raise LexError("unclosed parenthesis")
        return self._stack[0]

    def _value(self, kind: str | None, m: re.Match[bytes]) -> None:
        prev = self._prev
        if kind == "atom":
            raw = m.group("atom")
            # After ")" only the tail of a section may follow: "...FIELDS (A B)]<0.10>".
            if prev == _VALUE or (prev == _CLOSE and raw[:1] != b"]"):
                raise LexError("missing space between arguments")
            self._push(Atom(raw.decode("ascii")))
            self._prev = _VALUE
            return
        if prev not in (_START, _SEP):
            raise LexError("missing space between arguments")
        if kind == "open":
            if len(self._stack) > self._max_depth:
                raise LexError("parentheses nested too deeply")
            self._count += 1  # the list itself is a token
            self._stack.append([])
            self._prev = _START
            return
        body = m.group("quoted")
        if b"\\" in body:
            body = _UNESCAPE.sub(rb"\1", body)
        self._push(String(body))
        self._prev = _VALUE

    def _close(self) -> None:
        if len(self._stack) == 1:
            raise LexError("unbalanced ')'")
        items = self._stack.pop()
        self._stack[-1].append(ParenList(tuple(items)))
        self._prev = _CLOSE

    def _literal_header(self, m: re.Match[bytes]) -> LiteralHeader:
        if self._prev not in (_START, _SEP):
            raise LexError("missing space before literal")
        digits = m.group("lsize")
        if len(digits) > MAX_LITERAL_DIGITS:
            raise LexError("literal too big")
        return LiteralHeader(int(digits), m.group("lplus") is None, m.group("l8") is not None)

    def _push(self, tok: Token) -> None:
        self._count += 1
        if self._count > self._max_tokens:
            raise LexError("too many arguments")
        self._stack[-1].append(tok)


def _why(text: bytes, pos: int) -> str:
    """A clear reason for the token that failed to match at ``pos``."""
    c = text[pos]
    if c == 0x22:  # '"'
        m = _QUOTED_PREFIX.match(text, pos)
        stop = m.end() if m else pos
        if stop >= len(text):
            return "unterminated quoted string"
        if text[stop] == 0x5C:
            return 'invalid escape in quoted string (only \\" and \\\\)'
        return "NUL in quoted string"
    if c == 0x7B:
        return "invalid literal (a literal must end the line)"
    if c >= 0x80:
        return "8-bit character outside a quoted string or literal"
    if c == 0:
        return "NUL character in command"
    return f"unexpected control character 0x{c:02x}"
