"""The bulk DATA reader: terminator handling, dot-stuffing, limits, smuggling."""

from __future__ import annotations

import asyncio

import pytest

from mailwarden.smtp.data import (
    DataProblem,
    has_bare_newline,
    normalize_newlines,
    read_data,
    receive,
    unstuff,
)


def feed(data: bytes, limit: int = 1001) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=limit)
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_empty_message() -> None:
    r = feed(b".\r\nQUIT\r\n")
    assert await read_data(r, 100) == (b"", False)
    assert await r.read() == b"QUIT\r\n"


async def test_second_line_terminator_and_pipelined_rest() -> None:
    r = feed(b"Subject: x\r\n.\r\nMAIL FROM:<a@b>\r\n")
    assert await read_data(r, 100) == (b"Subject: x\r\n", False)
    assert await r.read() == b"MAIL FROM:<a@b>\r\n"


async def test_line_ending_with_dot_is_not_terminator() -> None:
    r = feed(b"End of sentence.\r\nmore\r\n.\r\n")
    assert await read_data(r, 100) == (b"End of sentence.\r\nmore\r\n", False)


@pytest.mark.parametrize("limit", [8, 64, 1001, 65536])
async def test_large_message_chunked_any_limit(limit: int) -> None:
    body = b"".join(b"line %d.\r\n" % i for i in range(5000))
    r = feed(body + b".\r\nNOOP\r\n", limit=limit)
    data, too_big = await read_data(r, 10_000_000)
    assert (data, too_big) == (body, False)
    assert await r.read() == b"NOOP\r\n"


async def test_bare_lf_dot_does_not_end_data() -> None:
    # SMTP smuggling: <LF>.<CR><LF> and <CR><LF>.<LF> are not the end of data.
    payload = b"a\r\nb\n.\r\nMAIL FROM:<evil@x>\r\nc\r\n.\n\r\n.\r\n"
    r = feed(payload)
    data, _ = await read_data(r, 1000)
    assert data == b"a\r\nb\n.\r\nMAIL FROM:<evil@x>\r\nc\r\n.\n\r\n"
    assert has_bare_newline(data)


async def test_too_big_is_drained() -> None:
    r = feed(b"x" * 5000 + b"\r\n.\r\nQUIT\r\n", limit=100)
    assert await read_data(r, 1000) == (b"", True)
    assert await r.read() == b"QUIT\r\n"


def test_unstuff() -> None:
    assert unstuff(b"..leading\r\nx\r\n..\r\n") == b".leading\r\nx\r\n.\r\n"


def test_normalize() -> None:
    assert normalize_newlines(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n"


async def test_receive_rejects_bare_lf() -> None:
    res = await receive(
        feed(b"a\nb\r\n.\r\n"), max_size=1000, max_header=1000, bare_newline="reject"
    )
    assert res.problem is DataProblem.BARE_NEWLINE


async def test_receive_normalizes_when_configured() -> None:
    res = await receive(
        feed(b"A: b\n\nbody\r\n.\r\n"), max_size=1000, max_header=1000, bare_newline="normalize"
    )
    assert res.problem is DataProblem.NONE
    assert res.content == b"A: b\r\n\r\nbody\r\n"


async def test_receive_header_too_big() -> None:
    msg = b"X-Big: " + b"a" * 3000 + b"\r\n\r\nbody\r\n.\r\n"
    res = await receive(feed(msg), max_size=100_000, max_header=1000, bare_newline="reject")
    assert res.problem is DataProblem.HEADER_TOO_BIG
