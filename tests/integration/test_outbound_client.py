"""The outbound SMTP client against real sinks (tests/sinks.py) and real DNS (Knot).

Sinks listen on 127.0.0.2 and 127.0.0.3 with one shared port, as MX hosts would on
port 25; 127.0.0.4 on that port has nobody listening (connection refused).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dnsserver import KnotServer, ZoneSet
from mailwarden.delivery.client import (
    ConnectFailure,
    OutboundConnection,
    RemoteReply,
    connect,
    parse_reply,
)
from mailwarden.delivery.mx import Hop, RouteFailure, resolve_hops
from mailwarden.dns.resolver import DnsPythonResolver
from sinks import SinkServer

HELO = "out.mailwarden.test"
FAST: dict[str, Any] = {"helo": HELO, "connect_timeout": 1.0, "command_timeout": 1.0}
SENDER = "sender@mailwarden.test"
MSG = (
    b"From: <sender@mailwarden.test>\r\nTo: <a@dest.test>\r\nSubject: hi\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=mailwarden.test; s=s; bh=x; b=y\r\n\r\n"
    b"hello\r\n"
)


@pytest.fixture
def sinks() -> Iterator[tuple[SinkServer, SinkServer]]:
    """Two sinks on one port: 127.0.0.2 (mx1) and 127.0.0.3 (mx2)."""
    for _ in range(5):
        a = SinkServer("127.0.0.2").start()
        b = SinkServer("127.0.0.3", a.port)
        try:
            b.start()
        except OSError:  # the port was taken on 127.0.0.3: try another
            b.stop()
            a.stop()
            continue
        try:
            yield a, b
        finally:
            b.stop()
            a.stop()
        return
    pytest.fail("no port free on both 127.0.0.2 and 127.0.0.3")


@pytest.fixture
def resolver(test_tld: KnotServer) -> DnsPythonResolver:
    return DnsPythonResolver([test_tld.nameserver], timeout=3, cache=False)


async def mx_route(
    zones: ZoneSet, resolver: DnsPythonResolver, port: int, records: list[str]
) -> list[Hop]:
    zones.set_zone(zones.domain, records)
    return await resolve_hops(resolver, zones.domain, port)


def hops(port: int, *ips: str) -> list[Hop]:
    return [Hop(f"mx{i}.dest.test", (ip,), port) for i, ip in enumerate(ips, 1)]


async def open_conn(sink: SinkServer, **kw: Any) -> OutboundConnection:
    return await connect(hops(sink.port, sink.host), **{**FAST, **kw})


# --------------------------------------------------------------------------- routing


async def test_mx_order_tls_and_one_transaction_for_several_rcpts(
    sinks: tuple[SinkServer, SinkServer], dns_zones: ZoneSet, resolver: DnsPythonResolver
) -> None:
    a, b = sinks
    d = dns_zones.domain
    route = await mx_route(
        dns_zones,
        resolver,
        a.port,
        ["@ MX 20 mx2", "@ MX 10 mx1", "mx1 A 127.0.0.2", "mx2 A 127.0.0.3"],
    )
    assert [(h.host, h.ips) for h in route] == [
        (f"mx1.{d}", ("127.0.0.2",)),
        (f"mx2.{d}", ("127.0.0.3",)),
    ]
    async with await connect(route, **FAST) as conn:
        facts = conn.facts
        assert (facts.mx_host, facts.mx_ip, facts.source_ip) == (
            f"mx1.{d}",
            "127.0.0.2",
            "127.0.0.1",
        )
        assert facts.tls and facts.tls_version.startswith("TLSv1.")
        rcpts = [f"u{i}@{d}" for i in range(3)]
        result = await conn.send(SENDER, rcpts, MSG)
    assert set(result.replies) == set(rcpts)
    assert all(r.code == 250 and r.success for r in result.replies.values())
    [got] = a.wait_for(1)
    assert (got.mail_from, got.rcpts, got.tls, got.helo) == (SENDER, rcpts, True, HELO)
    assert a.transactions == 1 and a.connections == 1 and b.connections == 0


async def test_second_mx_when_first_refuses_connections(
    sinks: tuple[SinkServer, SinkServer], dns_zones: ZoneSet, resolver: DnsPythonResolver
) -> None:
    a, b = sinks
    route = await mx_route(
        dns_zones,
        resolver,
        a.port,
        ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.4", "mx2 A 127.0.0.3"],
    )
    async with await connect(route, **FAST) as conn:
        assert conn.facts.mx_ip == "127.0.0.3"
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
    assert result.replies["x@dest.test"].success
    b.wait_for(1)


async def test_next_address_of_the_same_host_and_source_address(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, _ = sinks
    hop = [Hop("mx.dest.test", ("127.0.0.4", a.host), a.port)]
    async with await connect(hop, source_address="127.0.0.5", **FAST) as conn:
        assert (conn.facts.mx_ip, conn.facts.source_ip) == (a.host, "127.0.0.5")
        await conn.send(SENDER, ["x@dest.test"], MSG)
    assert a.wait_for(1)[0].peer == "127.0.0.5"


async def test_second_mx_when_first_greets_421(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, b = sinks
    a.configure(greeting="421 4.3.2 too busy")
    async with await connect(hops(a.port, a.host, b.host), **FAST) as conn:
        assert conn.facts.mx_host == "mx2.dest.test"
    assert a.connections == 1 and b.connections == 1


async def test_all_hops_failing_raises_connect_failure_with_last_reply(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, b = sinks
    b.configure(greeting="554 5.7.1 go away")
    with pytest.raises(ConnectFailure) as info:
        await connect(hops(a.port, "127.0.0.4", b.host), **FAST)
    reply = info.value.reply
    assert (reply.code, reply.enhanced, reply.text) == (554, "5.7.1", "go away")
    assert reply.permanent
    assert info.value.tried == [
        f"mx1.dest.test[127.0.0.4]:{a.port}",
        f"mx2.dest.test[127.0.0.3]:{a.port}",
    ]
    with pytest.raises(ConnectFailure) as info:
        await connect(hops(a.port, "127.0.0.4"), **FAST)
    assert info.value.reply.code is None and info.value.reply.temporary
    assert "127.0.0.4" in info.value.reply.text


async def test_null_mx_and_nxdomain_through_real_dns(
    dns_zones: ZoneSet, resolver: DnsPythonResolver
) -> None:
    with pytest.raises(RouteFailure) as info:
        await mx_route(dns_zones, resolver, 25, ["@ MX 0 ."])
    assert (info.value.permanent, info.value.enhanced) == (True, "5.1.10")
    with pytest.raises(RouteFailure) as info:
        await resolve_hops(resolver, f"nx-{dns_zones.domain}", 25)
    assert (info.value.permanent, info.value.enhanced) == (True, "5.1.2")
    # No MX: the domain's own address is the implicit MX (RFC 5321 §5.1).
    route = await mx_route(dns_zones, resolver, 25, ["@ A 127.0.0.2", "@ AAAA ::1"])
    assert route == [Hop(dns_zones.domain, ("127.0.0.2", "::1"), 25)]


async def test_helo_when_ehlo_is_refused(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(ehlo=False)
    async with await open_conn(a) as conn:
        assert not conn.facts.tls and not conn.supports("size")
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
    assert result.replies["x@dest.test"].success
    got = a.wait_for(1)[0]
    assert (got.helo, got.mail_options) == (HELO, [])


# ------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize(("mode", "connections"), [("refuse", 1), ("broken", 2), ("none", 1)])
async def test_opportunistic_tls_falls_back_to_plaintext(
    sinks: tuple[SinkServer, SinkServer], mode: str, connections: int
) -> None:
    a, _ = sinks
    a.configure(starttls=mode)
    async with await open_conn(a) as conn:
        assert (conn.facts.tls, conn.facts.tls_version) == (False, "")
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
    assert result.replies["x@dest.test"].success
    [got] = a.wait_for(1)
    assert not got.tls
    # "refuse": carry on in the same session; "broken" handshake: reconnect in plaintext.
    assert a.connections == connections


async def test_required_starttls_verifies_and_authenticates(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, _ = sinks
    a.configure(logins={("relayuser", "s3cret")})
    trusted = ssl.create_default_context(cafile=str(a.cert))
    hop = [Hop("localhost", (a.host,), a.port)]  # the sink's certificate names localhost
    kw: dict[str, Any] = {**FAST, "tls": "starttls", "tls_context": trusted}
    async with await connect(hop, username="relayuser", password="s3cret", **kw) as conn:
        assert conn.facts.tls
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
    assert result.replies["x@dest.test"].success
    assert a.wait_for(1)[0].login == "relayuser"

    with pytest.raises(ConnectFailure) as info:
        await connect(hop, username="relayuser", password="wrong", **kw)
    assert info.value.reply.code == 535
    with pytest.raises(ConnectFailure) as info:  # an untrusted certificate
        await connect(hop, **{**kw, "tls_context": None})
    assert info.value.reply.enhanced == "4.7.5"
    a.configure(starttls="none")
    with pytest.raises(ConnectFailure) as info:
        await connect(hop, username="relayuser", password="s3cret", **kw)
    assert (info.value.reply.code, info.value.reply.enhanced) == (None, "4.7.4")
    assert a.wait_for(1) and len(a.received) == 1


async def test_implicit_tls_with_auth() -> None:
    with SinkServer("127.0.0.2", implicit_tls=True) as smtps:
        smtps.configure(logins={("u", "p")})
        trusted = ssl.create_default_context(cafile=str(smtps.cert))
        hop = [Hop("localhost", (smtps.host,), smtps.port)]
        kw: dict[str, Any] = {**FAST, "tls": "implicit", "tls_context": trusted}
        async with await connect(hop, username="u", password="p", **kw) as conn:
            assert conn.facts.tls and conn.facts.tls_version.startswith("TLSv1.")
            result = await conn.send(SENDER, ["x@dest.test"], MSG)
        assert result.replies["x@dest.test"].success
        [got] = smtps.wait_for(1)
        assert (got.tls, got.login) == (True, "u")


# ---------------------------------------------------------------------- transactions


async def test_per_recipient_550(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(reject_rcpts={"ghost@dest.test"})
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, ["x@dest.test", "ghost@dest.test"], MSG)
    ghost = result.replies["ghost@dest.test"]
    assert (ghost.code, ghost.enhanced, ghost.text) == (550, "5.1.1", "no such user")
    assert ghost.permanent and result.replies["x@dest.test"].success
    assert a.wait_for(1)[0].rcpts == ["x@dest.test"]


async def test_all_recipients_refused_sends_no_data_and_keeps_the_connection(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, _ = sinks
    a.configure(reject_rcpts={"ghost@dest.test"})
    async with await open_conn(a) as conn:
        first = await conn.send(SENDER, ["ghost@dest.test"], MSG)
        assert first.replies["ghost@dest.test"].code == 550 and conn.usable
        second = await conn.send(SENDER, ["x@dest.test"], MSG)
    assert second.replies["x@dest.test"].success
    assert len(a.wait_for(1)) == 1 and a.connections == 1 and a.transactions == 2


@pytest.mark.parametrize("at", ["rcpt", "data", "dot"])
async def test_4xx_then_success_on_the_same_connection(
    sinks: tuple[SinkServer, SinkServer], at: str
) -> None:
    a, _ = sinks
    a.configure(tempfail_first=1, tempfail_at=at)
    rcpts = ["x@dest.test", "y@dest.test"]
    async with await open_conn(a) as conn:
        first = await conn.send(SENDER, rcpts, MSG)
        assert conn.usable
        second = await conn.send(SENDER, rcpts, MSG)
    for reply in first.replies.values():
        assert (reply.code, reply.enhanced, reply.temporary) == (451, "4.3.0", True)
    assert all(r.success for r in second.replies.values())
    assert len(a.wait_for(1)) == 1 and a.connections == 1


async def test_5xx_after_the_final_dot(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(data_reply="554-5.7.1 looks like spam\r\n554 5.7.1 see policy")
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, ["x@dest.test", "y@dest.test"], MSG)
        assert conn.usable
    for reply in result.replies.values():
        assert (reply.code, reply.enhanced) == (554, "5.7.1")
        assert reply.text == "looks like spam see policy"


async def test_421_mid_session_ends_the_connection(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(data_reply="421 4.3.2 shutting down")
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
        assert not conn.usable
    assert result.replies["x@dest.test"].code == 421


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "dot"])
async def test_dropped_connection_does_not_raise(
    sinks: tuple[SinkServer, SinkServer], at: str
) -> None:
    a, _ = sinks
    a.configure(drop_at=at, reject_rcpts={"ghost@dest.test"})
    rcpts = ["ghost@dest.test", "x@dest.test", "y@dest.test"]
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, rcpts, MSG)
        assert not conn.usable
        again = await conn.send(SENDER, ["z@dest.test"], MSG)
    # Dropped at MAIL or at the first RCPT: everyone is lost; later, ghost had its 550.
    ghost_decided = at in ("data", "dot")
    lost = [r for k, r in result.replies.items() if k != "ghost@dest.test" or not ghost_decided]
    assert len(lost) == (2 if ghost_decided else 3)
    for reply in lost:
        assert (reply.code, reply.enhanced, reply.temporary) == (None, "4.4.2", True)
        assert "connection lost" in reply.text
    if ghost_decided:
        assert result.replies["ghost@dest.test"].code == 550
    assert again.replies["z@dest.test"].code is None
    assert a.received == []


@pytest.mark.parametrize(
    ("at", "garbage"), [("mail", "hello there"), ("rcpt", "99x"), ("dot", "x-garbage")]
)
async def test_garbage_reply_does_not_raise(
    sinks: tuple[SinkServer, SinkServer], at: str, garbage: str
) -> None:
    a, _ = sinks
    a.configure(garbage_at=at, garbage=garbage)
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, ["x@dest.test", "y@dest.test"], MSG)
        assert not conn.usable
    for reply in result.replies.values():
        assert (reply.code, reply.enhanced) == (None, "4.5.0")
        assert garbage in reply.text


async def test_garbage_greeting_is_a_connect_failure(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(garbage_at="greeting")
    with pytest.raises(ConnectFailure) as info:
        await open_conn(a)
    assert info.value.reply.code is None and "hello there" in info.value.reply.text


async def test_slow_server_hits_command_timeout(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(delay=1.0, delay_at={"rcpt"})
    async with await open_conn(a, command_timeout=0.2) as conn:
        started = time.monotonic()
        result = await conn.send(SENDER, ["x@dest.test"], MSG)
        assert time.monotonic() - started < 0.8
        assert not conn.usable
    reply = result.replies["x@dest.test"]
    assert (reply.code, reply.enhanced) == (None, "4.4.2") and "timeout" in reply.text


async def test_data_timeout_bounds_the_wait_after_the_dot(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, _ = sinks
    a.configure(delay=0.4, delay_at={"dot"})
    async with await open_conn(a, command_timeout=0.2, data_timeout=1.0) as conn:
        assert (await conn.send(SENDER, ["x@dest.test"], MSG)).replies["x@dest.test"].success
    async with await open_conn(a, command_timeout=1.0, data_timeout=0.2) as conn:
        reply = (await conn.send(SENDER, ["x@dest.test"], MSG)).replies["x@dest.test"]
    assert (reply.code, reply.enhanced) == (None, "4.4.2") and "timeout" in reply.text
    assert len(a.wait_for(2)) == 2  # the server took it: a duplicate on retry (RFC 1047)


async def test_slow_greeting_within_command_timeout(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(delay=0.3, delay_at={"greeting"})
    async with await open_conn(a, connect_timeout=0.1, command_timeout=1.0) as conn:
        assert conn.usable


async def test_connection_reuse_for_two_transactions(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    async with await open_conn(a) as conn:
        for i in range(2):
            result = await conn.send(SENDER, [f"r{i}@dest.test"], MSG)
            assert result.replies[f"r{i}@dest.test"].success
    got = a.wait_for(2)
    assert [m.rcpts for m in got] == [["r0@dest.test"], ["r1@dest.test"]]
    assert (a.connections, a.transactions) == (1, 2)


async def test_message_goes_out_byte_identical(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    body = (
        MSG
        + b".leading dot\r\n..two dots\r\n.\r\n \r\n\ttab\r\ntrailing space \r\n"
        + "8-bit: caf\u00e9\r\n".encode()
        + b"x" * 990
        + b"\r\n"
    )
    async with await open_conn(a) as conn:
        await conn.send(SENDER, ["x@dest.test"], body)
    [got] = a.wait_for(1)
    assert got.data == body
    assert got.mail_options == [f"SIZE={len(body)}", "BODY=8BITMIME"]


async def test_bare_line_feeds_become_crlf(sinks: tuple[SinkServer, SinkServer]) -> None:
    # aiosmtplib's data() turns lone LF/CR into CRLF and adds a final CRLF (RFC 5321 §2.3.8).
    a, _ = sinks
    async with await open_conn(a) as conn:
        await conn.send(SENDER, ["x@dest.test"], b"Subject: x\n\nline\rend")
    assert a.wait_for(1)[0].data == b"Subject: x\r\n\r\nline\r\nend\r\n"


async def test_non_ascii_addresses_need_smtputf8(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    rcpts = ["j\u00f6rg@dest.test", "x@dest.test"]
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, rcpts, MSG)
        assert conn.usable
    bad = result.replies[rcpts[0]]
    assert (bad.code, bad.enhanced, bad.permanent) == (553, "5.6.7", True)
    assert a.wait_for(1)[0].rcpts == ["x@dest.test"]

    a.configure(smtputf8=True)
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, rcpts, MSG)
    assert all(r.success for r in result.replies.values())
    got = a.wait_for(2)[1]
    assert got.rcpts == rcpts and "SMTPUTF8" in got.mail_options


async def test_message_over_the_advertised_size_is_not_sent(
    sinks: tuple[SinkServer, SinkServer],
) -> None:
    a, _ = sinks
    a.configure(size_limit=100)
    async with await open_conn(a) as conn:
        result = await conn.send(SENDER, ["x@dest.test"], MSG + b"x" * 200 + b"\r\n")
        assert conn.usable
    assert (result.replies["x@dest.test"].code, result.replies["x@dest.test"].enhanced) == (
        552,
        "5.3.4",
    )
    assert a.transactions == 0


async def test_close_is_bounded_when_the_server_hangs(sinks: tuple[SinkServer, SinkServer]) -> None:
    a, _ = sinks
    a.configure(delay=2.0, delay_at={"quit"})
    conn = await open_conn(a)
    started = time.monotonic()
    await conn.close(grace=0.2)
    assert time.monotonic() - started < 1.0
    assert not conn.usable


# --------------------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (250, "2.1.5 ok", RemoteReply(250, "2.1.5", "ok")),
        (550, "5.1.1 no such\n5.1.1 user here", RemoteReply(550, "5.1.1", "no such user here")),
        (451, "try later", RemoteReply(451, "4.0.0", "try later")),
        (550, "4.1.1 class mismatch", RemoteReply(550, "5.0.0", "4.1.1 class mismatch")),
        (554, "5.7.1", RemoteReply(554, "5.7.1", "")),
        (250, "2.0.0.1 not a code", RemoteReply(250, "2.0.0", "2.0.0.1 not a code")),
    ],
)
def test_parse_reply(code: int, message: str, expected: RemoteReply) -> None:
    assert parse_reply(code, message) == expected


def test_reply_classes() -> None:
    assert RemoteReply(None, "4.4.2", "lost").temporary
    assert not RemoteReply(None, "4.4.2", "lost").permanent
    assert RemoteReply(250, "2.0.0", "").success
    assert RemoteReply(552, "5.3.4", "").permanent
