"""Bulk DATA reader: read up to CRLF.CRLF in large chunks instead of line by line.

aiosmtpd reads DATA one line at a time; for large messages that dominates CPU. This
reader asks the StreamReader for everything up to the next ".\r\n" and checks whether
it completes the terminator. Only the exact sequence CRLF "." CRLF ends the data
(RFC 5321 §4.1.1.4), with the CRLF before the first line implied, so bare-LF
variants such as LF "." CRLF can never end a message (SMTP smuggling).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

_DOT_CRLF = b".\r\n"
_TERMINATOR = b"\r\n.\r\n"


class DataProblem(Enum):
    NONE = "none"
    TOO_BIG = "too_big"
    BARE_NEWLINE = "bare_newline"
    HEADER_TOO_BIG = "header_too_big"


@dataclass(frozen=True, slots=True)
class DataResult:
    content: bytes  # un-dot-stuffed message, CRLF line ends (empty when problem is TOO_BIG)
    problem: DataProblem
    received: int  # bytes read off the wire, terminator excluded


async def read_data(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read the raw (still dot-stuffed) data up to the terminator.

    Returns (data, too_big). Data beyond ``limit`` is read and dropped so that the
    session stays in sync; then ``too_big`` is True and ``data`` is empty.
    """
    parts: list[bytes] = []
    size = 0
    too_big = False
    tail = b"\r\n"  # RFC 5321 §4.5.2: the data is preceded by an implied CRLF
    while True:
        try:
            chunk = await reader.readuntil(_DOT_CRLF)
        except asyncio.LimitOverrunError as exc:
            chunk = await reader.read(exc.consumed)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA") from exc
        window = tail + chunk
        if window.endswith(_TERMINATOR):
            body = chunk[: -len(_DOT_CRLF)]
            size += len(body)
            if not too_big:
                parts.append(body)
            break
        size += len(chunk)
        if not too_big:
            parts.append(chunk)
            if size > limit:
                too_big = True
                parts.clear()
        tail = window[-4:]
    if too_big or size > limit:
        return b"", True
    return b"".join(parts), False


def unstuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: drop the first "." of every line that starts with one."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")


def has_bare_newline(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def normalize_newlines(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def header_length(data: bytes) -> int:
    """Length of the header section including its blank line, or -1 if it never ends."""
    end = data.find(b"\r\n\r\n")
    if data.startswith(b"\r\n"):
        return 2
    return -1 if end < 0 else end + 4


async def receive(
    reader: asyncio.StreamReader,
    *,
    max_size: int,
    max_header: int,
    bare_newline: str,
) -> DataResult:
    """Read one message's DATA and apply the size, header and bare-newline rules."""
    raw, too_big = await read_data(reader, max_size)
    if too_big:
        return DataResult(b"", DataProblem.TOO_BIG, max_size + 1)
    received = len(raw)
    if has_bare_newline(raw):
        if bare_newline == "reject":
            return DataResult(b"", DataProblem.BARE_NEWLINE, received)
        raw = normalize_newlines(raw)
    content = unstuff(raw) if raw else raw
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    hlen = header_length(content)
    if (hlen < 0 and len(content) > max_header) or hlen > max_header:
        return DataResult(b"", DataProblem.HEADER_TOO_BIG, received)
    return DataResult(content, DataProblem.NONE, received)
