"""The outbound queue against scriptable sinks: retries and their timing, bounces, MX order,
TLS fallback, connection reuse, transports, VERP returns, expiry."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from sending import (
    ALICE,
    SUBMISSION_LISTENERS,
    client_tls,
    delivery,
    events,
    inbox,
    message,
    mx_domain,
    submit,
    wait_until,
)

from dnsserver import KnotServer, unique_domain
from mailwarden.core.clock import FakeClock
from mwserver import LOCAL_DOMAIN, PASSWORD, ServerThread
from sinks import SinkServer

MakeServer = Callable[..., ServerThread]
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    with SinkServer("127.0.0.2") as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def srv(make_server: MakeServer, sink: SinkServer, clock: FakeClock) -> ServerThread:
    return make_server(clock=clock, listeners=SUBMISSION_LISTENERS, delivery=delivery(sink.port))


def queued(srv: ServerThread) -> list[object]:
    return srv.call(srv.services.queue_admin.list_messages())


def dsn_parts(msg: Message) -> tuple[str, str]:
    """(message/delivery-status text, text/rfc822-headers text) of a DSN."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    status = headers = ""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            status = "\n".join(str(p) for p in part.get_payload())  # type: ignore[union-attr]
        if part.get_content_type() == "text/rfc822-headers":
            headers = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return status, headers


def test_temporary_failure_is_retried_on_schedule(
    srv: ServerThread, sink: SinkServer, clock: FakeClock, test_tld: KnotServer
) -> None:
    sink.configure(tempfail_first=1, tempfail_at="rcpt")
    dest = mx_domain(test_tld, "retry", (10, "127.0.0.2"))
    submit(srv, message("retry", to=f"r@{dest}"), [f"r@{dest}"])
    (first,) = wait_until(lambda: events(srv, recipient_domain=dest), what="first attempt")
    assert (first.outcome, first.code, first.enhanced) == ("deferred", 451, "4.3.0")
    (msg,) = queued(srv)
    (rcpt,) = msg.recipients  # type: ignore[attr-defined]
    assert rcpt.state == "deferred" and rcpt.attempts == 1
    assert rcpt.next_attempt_at == T0 + timedelta(minutes=5)  # retry_initial
    clock.advance(299)
    srv.call(srv.services.queue_admin.counts())  # a round trip; nothing is due yet
    assert sink.received == [] and len(events(srv, recipient_domain=dest)) == 1
    clock.advance(1)
    sink.wait_for(1)
    later = wait_until(lambda: events(srv, recipient_domain=dest)[1:], what="second attempt")
    assert (later[0].outcome, later[0].attempt) == ("delivered", 2)
    wait_until(lambda: not queued(srv), what="an empty queue")


def test_permanent_failure_returns_a_dsn_to_the_sender(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "bounce", (10, "127.0.0.2"))
    sink.configure(reject_rcpts={f"gone@{dest}"})
    submit(srv, message("bounce me", to=f"gone@{dest}"), [f"gone@{dest}", f"here@{dest}"])
    got = sink.wait_for(1)[0]
    assert got.rcpts == [f"here@{dest}"]  # one transaction, one recipient refused
    dsns = wait_until(lambda: inbox(srv), what="a DSN in alice's INBOX")
    status, headers = dsn_parts(dsns[0])
    assert f"Final-Recipient: rfc822; gone@{dest}" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert f"Remote-MTA: dns; mx1.{dest}" in status and "Diagnostic-Code: smtp; 550" in status
    assert "Subject: bounce me" in headers
    outcomes = {e.recipient: e.outcome for e in events(srv, recipient_domain=dest)}
    assert outcomes == {f"gone@{dest}": "bounced", f"here@{dest}": "delivered"}
    wait_until(lambda: not queued(srv), what="an empty queue")


def test_null_mx_bounces_at_once(srv: ServerThread, test_tld: KnotServer) -> None:
    dest = unique_domain("nullmx")
    test_tld.set_zone(dest, ["@ MX 0 ."])  # RFC 7505
    submit(srv, message("nullmx", to=f"x@{dest}"), [f"x@{dest}"])
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert (e.outcome, e.code, e.enhanced, e.attempt) == ("bounced", None, "5.1.10", 1)
    status, _ = dsn_parts(wait_until(lambda: inbox(srv), what="DSN")[0])
    assert "Status: 5.1.10" in status


def test_nonexistent_domain_bounces(srv: ServerThread, test_tld: KnotServer) -> None:
    dest = unique_domain("nxdomain")  # never created: NXDOMAIN under test.
    submit(srv, message("nx", to=f"x@{dest}"), [f"x@{dest}"])
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert (e.outcome, e.enhanced) == ("bounced", "5.1.2")


def test_mx_hosts_tried_in_preference_order(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    # mx1 (preference 10) is 127.0.0.3, where nothing listens; mx2 (20) is the sink
    dest = mx_domain(test_tld, "fallback", (20, "127.0.0.2"), (10, "127.0.0.3"))
    submit(srv, message("fallback", to=f"x@{dest}"), [f"x@{dest}"])
    sink.wait_for(1)
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert (e.outcome, e.mx_host, e.mx_ip) == ("delivered", f"mx1.{dest}", "127.0.0.2")


def test_implicit_mx_when_there_is_no_mx_record(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = unique_domain("implicit")
    test_tld.set_zone(dest, ["@ A 127.0.0.2"])  # RFC 5321 §5.1: the domain is its own MX
    submit(srv, message("implicit mx", to=f"x@{dest}"), [f"x@{dest}"])
    sink.wait_for(1)
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert (e.outcome, e.mx_host) == ("delivered", dest)


def test_recipients_share_a_transaction_and_connections_are_reused(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "reuse", (10, "127.0.0.2"))
    rcpts = [f"u{i}@{dest}" for i in range(3)]
    submit(srv, message("three", to=rcpts[0]), rcpts)
    got = sink.wait_for(1)[0]
    assert sorted(got.rcpts) == rcpts and sink.transactions == 1
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=client_tls())
        s.login(ALICE, PASSWORD)
        for i in range(4):  # one at a time: each finds the previous session idle
            s.sendmail(ALICE, [f"v{i}@{dest}"], message(f"m{i}", to=f"v{i}@{dest}"))
            sink.wait_for(2 + i)
    assert sink.transactions == 5
    assert sink.connections == 1  # all five transactions on one connection


def test_starttls_refused_falls_back_to_plaintext(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    sink.configure(starttls="refuse")
    dest = mx_domain(test_tld, "notls", (10, "127.0.0.2"))
    submit(srv, message("plain", to=f"x@{dest}"), [f"x@{dest}"])
    assert not sink.wait_for(1)[0].tls
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert (e.outcome, e.tls, e.tls_version) == ("delivered", False, "")


@pytest.mark.parametrize(
    "behaviour",
    [{"garbage_at": "rcpt"}, {"drop_at": "mail"}, {"greeting": "554 5.7.1 go away"}],
    ids=["garbage-reply", "dropped-connection", "554-greeting"],
)
def test_broken_remote_servers_defer_and_the_runner_lives_on(
    behaviour: dict[str, str],
    srv: ServerThread,
    sink: SinkServer,
    clock: FakeClock,
    test_tld: KnotServer,
) -> None:
    sink.configure(**behaviour)
    dest = mx_domain(test_tld, "broken", (10, "127.0.0.2"))
    submit(srv, message("broken", to=f"x@{dest}"), [f"x@{dest}"])
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert e.outcome == "deferred"
    sink.configure(garbage_at="", drop_at="", greeting="")
    clock.advance(300)
    sink.wait_for(1)
    assert wait_until(lambda: events(srv, recipient_domain=dest)[1:])[0].outcome == "delivered"


def test_slow_server_times_out_and_is_retried(
    make_server: MakeServer, sink: SinkServer, clock: FakeClock, test_tld: KnotServer
) -> None:
    srv = make_server(
        clock=clock,
        listeners=SUBMISSION_LISTENERS,
        delivery=delivery(sink.port, command_timeout=0.5),
    )
    sink.configure(delay=2.0, delay_at={"mail"})
    dest = mx_domain(test_tld, "slow", (10, "127.0.0.2"))
    submit(srv, message("slow", to=f"x@{dest}"), [f"x@{dest}"])
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert e.outcome == "deferred" and e.code is None


def test_undeliverable_mail_expires_with_a_dsn(
    make_server: MakeServer, sink: SinkServer, clock: FakeClock, test_tld: KnotServer
) -> None:
    srv = make_server(
        clock=clock,
        listeners=SUBMISSION_LISTENERS,
        delivery=delivery(sink.port, max_lifetime=900),
    )
    sink.configure(tempfail_first=1000)
    dest = mx_domain(test_tld, "expire", (10, "127.0.0.2"))
    submit(srv, message("expire", to=f"x@{dest}"), [f"x@{dest}"])
    wait_until(lambda: len(events(srv, recipient_domain=dest)) == 1)
    clock.advance(300)  # attempt 2 at +5 min, next would be +15 min: still inside 900 s
    wait_until(lambda: len(events(srv, recipient_domain=dest)) == 2)
    clock.advance(600)  # attempt 3 at +15 min; the next would be past the lifetime
    evs = wait_until(
        lambda: [e for e in events(srv, recipient_domain=dest) if e.outcome == "bounced"]
    )
    assert evs[0].attempt == 3
    status, _ = dsn_parts(wait_until(lambda: inbox(srv), what="DSN")[0])
    assert "Status: 4.4.7" in status and "Action: failed" in status


def test_null_sender_mail_never_bounces(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "nullsender", (10, "127.0.0.2"))
    sink.configure(reject_rcpts={f"x@{dest}"})
    raw = message("a bounce of our own", to=f"x@{dest}")
    srv.call(srv.services.sending.submit(raw, mail_from="", remote=[f"x@{dest}"]))
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert e.outcome == "bounced"
    wait_until(lambda: not queued(srv), what="an empty queue")
    assert inbox(srv) == [] and len(events(srv)) == 1  # no DSN about a DSN


def test_transport_routes_a_domain_without_dns(make_server: MakeServer, sink: SinkServer) -> None:
    url = f"smtp://127.0.0.2:{sink.port}"
    srv = make_server(
        listeners=SUBMISSION_LISTENERS,
        delivery=delivery(sink.port, transports={"*": url}),
    )
    submit(srv, message("relayed", to="x@no-dns-at-all.invalid"), ["x@no-dns-at-all.invalid"])
    assert sink.wait_for(1)[0].rcpts == ["x@no-dns-at-all.invalid"]
    (e,) = wait_until(lambda: events(srv), what="event")
    assert (e.outcome, e.route, e.mx_ip) == ("delivered", url, "127.0.0.2")


def test_returned_dsn_is_tied_to_message_and_recipient(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "verp", (10, "127.0.0.2"))
    submit(srv, message("verp", to=f"later@{dest}"), [f"later@{dest}"])
    got = sink.wait_for(1)[0]
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    dsn = (
        f"From: MAILER-DAEMON@mx1.{dest}\r\nTo: <{got.mail_from}>\r\nSubject: failure\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nMailbox gone.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx1.{dest}\r\n\r\n"
        f"Final-Recipient: rfc822; later@{dest}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 mailbox disabled\r\n--b--\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=10) as s:
        s.ehlo("mx1." + dest)
        assert s.docmd("MAIL", "FROM:<>")[0] == 250
        # a token we never issued is refused
        assert s.docmd("RCPT", f"TO:<bounces+ffffffffffffffff@{LOCAL_DOMAIN}>")[0] == 550
        s.rset()
        s.sendmail("", [got.mail_from], dsn)
    returned = srv.call(srv.services.queue.returned_bounces(e.queue_id))
    assert [(r.recipient, r.status, r.action) for r in returned] == [
        (f"later@{dest}", "5.1.1", "failed")
    ]
    assert wait_until(lambda: inbox(srv), what="the DSN passed on")[0]["Subject"] == "failure"


def test_cached_connection_closed_by_the_server_is_replaced_not_deferred(
    make_server: MakeServer, test_tld: KnotServer
) -> None:
    first = SinkServer("127.0.0.2").start()
    port = first.port
    srv = make_server(listeners=SUBMISSION_LISTENERS, delivery=delivery(port, reuse_idle=30))
    dest = mx_domain(test_tld, "idleclose", (10, "127.0.0.2"))
    submit(srv, message("one", to=f"a@{dest}"), [f"a@{dest}"])
    first.wait_for(1)
    wait_until(lambda: events(srv, recipient_domain=dest), what="first event")
    first.stop()  # closes the connection the runner keeps for reuse
    with SinkServer("127.0.0.2", port) as second:
        submit(srv, message("two", to=f"b@{dest}"), [f"b@{dest}"])
        second.wait_for(1)
        evs = wait_until(lambda: events(srv, recipient_domain=dest)[1:], what="second event")
        assert (evs[0].outcome, evs[0].attempt) == ("delivered", 1)


@pytest.mark.postgres
def test_queue_and_events_on_postgresql(
    make_server: MakeServer, sink: SinkServer, test_tld: KnotServer
) -> None:
    from mwserver import postgres_database

    with postgres_database() as url:
        srv = make_server(url, listeners=SUBMISSION_LISTENERS, delivery=delivery(sink.port))
        srv.call(srv.services.dkim.generate(LOCAL_DOMAIN))
        dest = mx_domain(test_tld, "pg", (10, "127.0.0.2"))
        sink.configure(reject_rcpts={f"gone@{dest}"})
        submit(srv, message("pg", to=f"ok@{dest}"), [f"ok@{dest}", f"gone@{dest}"])
        assert b"DKIM-Signature" in sink.wait_for(1)[0].data
        wait_until(lambda: inbox(srv), what="a DSN")
        by = srv.call(srv.services.events.counts("recipient", filters={"recipient_domain": dest}))
        assert by == {f"ok@{dest}": {"delivered": 1}, f"gone@{dest}": {"bounced": 1}}
        wait_until(lambda: not queued(srv), what="an empty queue")
        srv.stop()


def test_a_dsn_that_cannot_be_filed_does_not_wedge_the_queue(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer, caplog: pytest.LogCaptureFixture
) -> None:
    from sending import BOB

    srv.call(srv.services.store.set_quota(BOB, 1))  # bob's mailbox is full
    dest = mx_domain(test_tld, "fullsender", (10, "127.0.0.2"))
    sink.configure(reject_rcpts={f"gone@{dest}"})
    submit(
        srv,
        message("from bob", sender=BOB, to=f"gone@{dest}"),
        [f"gone@{dest}"],
        sender=BOB,
        login=BOB,
    )
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert e.outcome == "bounced"
    wait_until(lambda: not queued(srv), what="an empty queue")
    assert "could not send the DSN" in caplog.text


def test_small_bodies_ride_in_the_queue_row_and_large_ones_in_the_blob_store(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    from mailwarden.services.sending import INLINE_BODY

    dest = mx_domain(test_tld, "bodies", (10, "127.0.0.2"))
    sink.configure(tempfail_first=2)  # keep both in the queue for a look
    big = message("big", to=f"b@{dest}").replace(
        b"this is a test.\r\n", b"0123456789abcdef\r\n" * (INLINE_BODY // 16)
    )
    submit(srv, message("small", to=f"s@{dest}"), [f"s@{dest}"])
    submit(srv, big, [f"b@{dest}"])
    wait_until(lambda: len(events(srv, recipient_domain=dest)) == 2, what="two deferrals")
    by_subject = {m.message_id.split(".")[0]: m for m in queued(srv)}  # type: ignore[attr-defined]
    assert by_subject["small"].blob == "" and by_subject["small"].body
    big_blob = srv.services.blobs.path(by_subject["big"].blob)
    assert by_subject["big"].body is None and big_blob.exists()
    srv.call(srv.services.queue_admin.retry(None))
    got = {r.rcpts[0]: r.data for r in sink.wait_for(2)}
    assert got[f"b@{dest}"].endswith(b"0123456789abcdef\r\n" * 3)
    assert len(got[f"b@{dest}"]) > INLINE_BODY
    wait_until(lambda: not queued(srv), what="an empty queue")
    assert not big_blob.exists()  # a queue body is private and leaves with its message
