"""Incremental, sans-I/O IMAP command reader (RFC 3501 §2.2, §4, §7.5; RFC 7888; RFC 3516).

Feed it whatever the socket returned; it hands back events::

    reader = CommandReader()
    for ev in reader.feed(data):
        RawCommand       -> dispatch it
        NeedContinuation -> send "+ OK" (a synchronizing literal is expected, §7.5)
        Malformed        -> send "tag BAD reason" ("* BAD" without tag); close if fatal

Framing rules and choices:

* Lines end in CRLF; a bare LF is accepted as a line end (liberal), a bare CR is not.
* ``max_line`` bounds the command text excluding literal data; ``max_literal`` bounds each
  literal and ``max_command`` all literals of one command (MULTIAPPEND). A synchronizing
  literal that is too big is refused *before* the continuation, so the client never
  sends it (§7.5).
* A non-synchronizing literal (RFC 7888 ``{n+}``) arrives unasked. When its command is
  refused, its bytes must not be read as commands (that is a command-injection vector),
  so the reader *consumes and discards* them, counting without buffering, then discards
  the rest of that command (which may carry further ``{m+}`` literals). If the literal is
  bigger than ``max_skip`` (or its size does not even parse) the reader gives up: it
  emits ``Malformed(fatal=True)`` and ignores all further input; the session sends BYE
  and closes (RFC 7888 §4 allows either).
* After any other Malformed the reader resynchronises at the next line end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwarden.imap.wire.lexer import (
    MAX_LITERAL_DIGITS,
    TAG_PREFIX,
    CommandLexer,
    LexError,
    LiteralHeader,
    parse_head,
)
from mailwarden.imap.wire.tokens import Token

KIB = 1024
MIB = 1024 * KIB
_TAIL_LITERAL = re.compile(rb"~?\{([0-9]+)(\+?)\}\r?\n?\Z")
_TAIL_KEEP = MAX_LITERAL_DIGITS + 8  # enough of a discarded line to see "{n+}\r\n"


@dataclass(frozen=True, slots=True)
class RawCommand:
    """A complete command: tag, upper-cased name, argument tokens (``UID`` keeps its verb)."""

    tag: str
    name: str
    args: list[Token]


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronizing literal of ``size`` octets was announced; send ``+`` (§7.5)."""

    tag: str
    size: int


@dataclass(frozen=True, slots=True)
class Malformed:
    """Answer ``tag BAD reason`` (``* BAD`` when tag is None); if ``fatal``, BYE and close."""

    tag: str | None
    reason: str
    fatal: bool = False


Event = RawCommand | NeedContinuation | Malformed

_LINE, _LITERAL, _SKIP_LITERAL, _SKIP_LINE, _DEAD = range(5)


class CommandReader:
    """Turns client bytes into command events; see the module docstring."""

    def __init__(
        self,
        *,
        max_line: int = 64 * KIB,
        max_literal: int = 50 * MIB,
        max_depth: int = 32,
        max_tokens: int = 10_000,
        max_command: int | None = None,
        max_skip: int | None = None,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_depth = max_depth
        self.max_tokens = max_tokens
        self.max_command = max_command if max_command is not None else 2 * max_literal
        self.max_skip = max_skip if max_skip is not None else max_literal
        self._buf = bytearray()
        self._mode = _LINE
        self._scanned = 0  # bytes of the pending partial line already searched for LF
        self._skip_tail = b""
        self._need = 0  # literal octets still expected (read or skipped)
        self._literal = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._tag: str | None = None
        self._name = ""
        self._lexer: CommandLexer | None = None
        self._line_used = 0
        self._literal_total = 0
        self._header: LiteralHeader | None = None

    @property
    def closed(self) -> bool:
        """True after a fatal Malformed: further input is ignored."""
        return self._mode == _DEAD

    def reject_literal(self) -> None:
        """The session answered a NeedContinuation with tagged NO/BAD, not "+" (§7.5).

        The client then never sends the literal, so the command is dropped and the
        reader expects a new command line. (A client that sends the literal anyway
        violates §7.5; its bytes are parsed as command lines and refused.)
        """
        if self._mode == _LITERAL and self._header is not None and self._header.sync:
            self._reset()
            self._literal = bytearray()
            self._need = 0
            self._mode = _LINE

    def feed(self, data: bytes, *, one_command: bool = False) -> list[Event]:
        """Consume ``data``; return the events it completes (possibly none).

        With ``one_command`` it stops after the first complete command and keeps the
        rest buffered (call ``feed(b"", one_command=True)`` for the next): a command
        such as IDLE, AUTHENTICATE or STARTTLS changes how the following bytes are read.
        """
        events: list[Event] = []
        if self._mode == _DEAD:
            return events
        buf = self._buf
        buf += data
        pos = 0
        steps = (self._step_line, self._step_literal, self._step_skip_literal, self._step_skip_line)
        while pos < len(buf) and self._mode != _DEAD:
            new = steps[self._mode](buf, pos, events)
            if new < 0:
                break
            pos = new
            if one_command and events and isinstance(events[-1], RawCommand):
                break
        del buf[:pos]  # CPython trims a bytearray's front in O(1)
        return events

    @property
    def mid_command(self) -> bool:
        """True while part of a command (line or literal) has arrived but not all of it."""
        return bool(self._buf) or self._lexer is not None or self._mode != _LINE

    def take_buffer(self) -> bytes:
        """Bytes received after the last complete command, handed to the caller (IDLE's
        DONE, an AUTHENTICATE response) and removed from the reader. Only valid between
        commands."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data

    def unread(self, data: bytes) -> None:
        """Give back bytes read past a raw line (IDLE's DONE, a SASL response): they are
        parsed as commands by the next :meth:`feed`."""
        self._buf[:0] = data
        self._scanned = 0

    def discard_buffer(self) -> int:
        """Drop buffered input (RFC 3207-style STARTTLS: nothing sent before the TLS
        handshake may be read as a command after it). Returns the bytes dropped."""
        return len(self.take_buffer())

    # -- modes: each returns the new position, or -1 when it needs more data --

    def _step_line(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        nl = buf.find(b"\n", pos + self._scanned)
        if nl < 0:
            pending = len(buf) - pos
            if self._line_used + pending > self.max_line + 2:
                self._overlong(bytes(buf[pos : pos + 256]), events)
                self._skip_tail = bytes(buf[max(pos, len(buf) - _TAIL_KEEP) :])
                self._mode = _SKIP_LINE
                return len(buf)
            self._scanned = pending
            return -1
        self._scanned = 0
        line = bytes(buf[pos : nl + 1])
        self._segment(line, events)
        return nl + 1

    def _step_literal(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        take = min(self._need, len(buf) - pos)
        self._literal += buf[pos : pos + take]
        self._need -= take
        if self._need == 0:
            self._literal_done(events)
        return pos + take

    def _step_skip_literal(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        take = min(self._need, len(buf) - pos)
        self._need -= take
        if self._need == 0:
            self._mode = _SKIP_LINE
            self._skip_tail = b""
        return pos + take

    def _step_skip_line(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            self._skip_tail = (self._skip_tail + buf[max(pos, len(buf) - _TAIL_KEEP) :])[
                -_TAIL_KEEP:
            ]
            return len(buf)
        tail = (self._skip_tail + buf[pos : nl + 1])[-_TAIL_KEEP:]
        self._skip_tail = b""
        self._mode = _LINE
        self._after_failure(tail, events, None)
        return nl + 1

    # -- command assembly --

    def _segment(self, line: bytes, events: list[Event]) -> None:
        """One line segment: the command line, or its continuation after a literal."""
        self._line_used += len(line)
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]  # bare LF tolerated
        try:
            if self._line_used > self.max_line + 2:
                raise LexError("command line too long")
            header = self._scan(text)
        except LexError as exc:
            self._fail(exc, text, events)
            return
        if header is None:
            self._complete(events)
        else:
            self._announce(header, text, events)

    def _scan(self, text: bytes) -> LiteralHeader | None:
        if b"\r" in text:  # §2.2: lines end in CRLF; a CR elsewhere is an error
            raise LexError("bare CR in command line")
        if self._lexer is None:
            self._tag, self._name, pos = parse_head(text)
            self._lexer = CommandLexer(self.max_depth, self.max_tokens)
        else:
            pos = 0
        return self._lexer.scan(text, pos)

    def _complete(self, events: list[Event]) -> None:
        assert self._lexer is not None and self._tag is not None
        try:
            args = self._lexer.finish()
        except LexError as exc:
            events.append(Malformed(self._tag, exc.reason))
        else:
            events.append(RawCommand(self._tag, self._name, args))
        self._reset()

    def _announce(self, header: LiteralHeader, text: bytes, events: list[Event]) -> None:
        """A literal header ended the segment: check limits, then expect its bytes."""
        total = self._literal_total + header.size
        if header.size > self.max_literal or total > self.max_command:
            # RFC 7888 §4: refuse; for "{n+}" _fail() discards the bytes or gives up.
            self._fail(LexError(f"literal too big (max {self.max_literal} octets)"), text, events)
            return
        assert self._tag is not None
        self._literal_total = total
        self._header = header
        self._need = header.size
        self._literal = bytearray()
        self._mode = _LITERAL
        if header.sync:
            events.append(NeedContinuation(self._tag, header.size))  # §7.5 "+" wanted
        if header.size == 0:
            self._literal_done(events)

    def _literal_done(self, events: list[Event]) -> None:
        assert self._lexer is not None and self._header is not None
        value = bytes(self._literal)
        self._literal = bytearray()
        self._mode = _LINE
        binary = self._header.binary
        if not binary and b"\x00" in value:
            # §9: literal = "{" number "}" CRLF *CHAR8 — CHAR8 excludes NUL; only
            # RFC 3516 literal8 "~{n}" may carry NULs.
            events.append(Malformed(self._tag, "NUL in literal (use literal8 ~{n})"))
            self._reset()
            self._mode = _SKIP_LINE
            self._skip_tail = b""
            return
        self._lexer.add_literal(value, binary)

    # -- failures and resynchronisation --

    def _fail(self, exc: LexError, text: bytes, events: list[Event]) -> None:
        """Report the command as bad; the segment ``text`` was consumed up to its end."""
        tag = self._tag if self._lexer is not None else exc.tag or _guess_tag(text)
        self._reset()
        self._after_failure(text, events, Malformed(tag, exc.reason))

    def _after_failure(self, tail: bytes, events: list[Event], bad: Malformed | None) -> None:
        """A refused command's line ended with ``tail``: skip a "{n+}" literal if any."""
        m = _TAIL_LITERAL.search(tail)
        if m is None or not m.group(2):
            # No literal, or a synchronizing one: the client waits for "+", gets BAD.
            if bad is not None:
                events.append(bad)
            return
        digits = m.group(1)
        size = int(digits) if len(digits) <= MAX_LITERAL_DIGITS else self.max_skip + 1
        if size > self.max_skip:
            reason = bad.reason if bad is not None else "command refused"
            tag = bad.tag if bad is not None else None
            events.append(Malformed(tag, f"{reason}; closing", fatal=True))
            self._mode = _DEAD
            return
        if bad is not None:
            events.append(bad)
        self._need = size
        self._mode = _SKIP_LITERAL if size else _SKIP_LINE

    def _overlong(self, start: bytes, events: list[Event]) -> None:
        """The pending line passed ``max_line`` before its end arrived."""
        tag = self._tag if self._lexer is not None else _guess_tag(start)
        self._reset()
        self._scanned = 0
        events.append(Malformed(tag, "command line too long"))


def _guess_tag(start: bytes) -> str | None:
    """The tag of a command line that failed before its head was parsed."""
    m = TAG_PREFIX.match(start)
    return m.group(1).decode("ascii") if m else None
