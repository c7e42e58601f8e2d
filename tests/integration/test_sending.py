"""Submission → DKIM → queue → remote MX (loopback sinks found through real DNS) → events."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator

import pytest
from sending import (
    ALICE,
    BOB,
    SUBMISSION_LISTENERS,
    client_tls,
    delivery,
    events,
    inbox,
    message,
    mx_domain,
    publish_sender_dns,
    submit,
    wait_until,
)

from dkimverify import signature_count, verify_dkimpy, verify_opendkim
from dnsserver import KnotServer
from mwserver import LOCAL_DOMAIN, PASSWORD, ServerThread
from sinks import SinkServer

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    with SinkServer("127.0.0.2") as s:
        yield s


@pytest.fixture
def srv(make_server: MakeServer, sink: SinkServer, test_tld: KnotServer) -> ServerThread:
    server = make_server(listeners=SUBMISSION_LISTENERS, delivery=delivery(sink.port))
    server.call(server.services.dkim.generate(LOCAL_DOMAIN))
    publish_sender_dns(server, test_tld)
    return server


def test_587_mail_arrives_signed_twice_and_verifies_independently(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "signed", (10, "127.0.0.2"))
    submit(srv, message("signed", to=f"carol@{dest}"), [f"carol@{dest}"])
    got = sink.wait_for(1)[0]
    assert got.rcpts == [f"carol@{dest}"]
    assert got.tls, "opportunistic STARTTLS was not used"
    assert got.mail_from.startswith("bounces+") and got.mail_from.endswith(f"@{LOCAL_DOMAIN}")
    assert signature_count(got.data) == 2
    assert b"a=rsa-sha256" in got.data and b"a=ed25519-sha256" in got.data
    ok, detail = verify_dkimpy(got.data, test_tld.nameserver)
    assert ok, detail
    ok, detail = verify_opendkim(got.data, test_tld.nameserver)
    assert ok, detail
    assert b"with ESMTPSA" in got.data  # RFC 3848: submitted after AUTH over TLS


def test_465_implicit_tls_and_local_recipients_skip_smtp(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "implicit", (10, "127.0.0.2"))
    refused = submit(srv, message("mixed", to=BOB), [BOB, f"dave@{dest}"], implicit=True)
    assert refused == {}
    got = sink.wait_for(1)[0]
    assert got.rcpts == [f"dave@{dest}"]  # the local recipient never went through SMTP
    bobs = wait_until(lambda: inbox(srv, BOB), what="bob's copy")
    assert bobs[0]["Subject"] == "mixed" and bobs[0]["DKIM-Signature"]
    assert inbox(srv, ALICE, "Sent") == []  # the client saves its own copy


def test_sent_copy_only_when_the_account_asks(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    srv.call(srv.services.accounts.set_save_sent(ALICE, True))
    dest = mx_domain(test_tld, "sentcopy", (10, "127.0.0.2"))
    submit(srv, message("keep a copy", to=f"e@{dest}"), [f"e@{dest}"])
    sink.wait_for(1)
    sent = srv.call(srv.services.mailstore.messages(ALICE, "Sent"))
    assert len(sent) == 1 and "\\Seen" in sent[0].flags


def test_auth_needs_tls_and_mail_needs_auth(srv: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("auth")  # never offered in plaintext
        code, text = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==")
        assert (code, text[:6]) == (538, b"5.7.11")
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0")
        s.starttls(context=client_tls())
        s.ehlo()
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0")
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login(ALICE, "wrong password")
        assert err.value.smtp_code == 535
        s.login(ALICE, PASSWORD)  # AUTH LOGIN or PLAIN, as smtplib picks


def test_only_own_addresses_and_aliases(srv: ServerThread, sink: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=client_tls())
        s.login(ALICE, PASSWORD)
        code, text = s.docmd("MAIL", f"FROM:<{BOB}>")
        assert (code, text[:5]) == (553, b"5.7.1")
        code, _ = s.docmd("MAIL", "FROM:<>")
        assert code == 553
        code, _ = s.docmd("MAIL", f"FROM:<postmaster@{LOCAL_DOMAIN}>")  # an alias of alice
        assert code == 250
        s.rset()
        code, _ = s.docmd("MAIL", f"FROM:<alice+tag@{LOCAL_DOMAIN}>")
        assert code == 250
        s.rset()
        # envelope is alice's, but the From header is bob's
        with pytest.raises(smtplib.SMTPDataError) as err:
            s.sendmail(ALICE, [BOB], message("forged", sender=BOB, to=BOB))
        assert (err.value.smtp_code, err.value.smtp_error[:5]) == (553, b"5.7.1")


def test_malformed_submissions_get_clear_errors(srv: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=client_tls())
        s.login(ALICE, PASSWORD)
        cases = [
            (b"Subject: no from\r\n\r\nbody\r\n", 550, b"5.6.0"),
            ("From: alice@example.test\r\nSubject: h\xe9\r\n\r\nx\r\n".encode(), 550, b"5.6.7"),
            (b"From: a@example.test\r\nFrom: b@example.test\r\n\r\nx\r\n", 550, b"5.6.0"),
        ]
        for raw, code, enhanced in cases:
            with pytest.raises(smtplib.SMTPDataError) as err:
                s.sendmail(ALICE, [BOB], raw)
            assert (err.value.smtp_code, err.value.smtp_error[:5]) == (code, enhanced), raw
        s.docmd("MAIL", f"FROM:<{ALICE}>")
        code, text = s.docmd("RCPT", "TO:<nobody@example.test>")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, _ = s.docmd("RCPT", "TO:<not an address>")
        assert code in (501, 553)


def test_failed_logins_lock_the_account_and_the_operator_can_unlock(srv: ServerThread) -> None:
    s = srv.services
    for _ in range(5):
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
            c.starttls(context=client_tls())
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.login(BOB, "not bobs password")
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
        c.starttls(context=client_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.login(BOB, PASSWORD)  # right password, but locked
        assert (err.value.smtp_code, err.value.smtp_error[:5]) == (454, b"4.7.0")
        c.login(ALICE, PASSWORD)  # the IP itself is not locked yet (10 per IP)
    locked = srv.call(s.guard.lockouts())
    assert [(t.kind, t.key, is_locked) for t, is_locked in locked] == [("account", BOB, True)]
    srv.call(s.guard.unlock(BOB))
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
        c.starttls(context=client_tls())
        c.login(BOB, PASSWORD)


def test_delivery_event_has_every_dimension(
    srv: ServerThread, sink: SinkServer, test_tld: KnotServer
) -> None:
    dest = mx_domain(test_tld, "events", (10, "127.0.0.2"))
    submit(srv, message("evt", to=f"f@{dest}"), [f"f@{dest}"])
    sink.wait_for(1)
    (e,) = wait_until(lambda: events(srv, recipient_domain=dest), what="event")
    assert e.outcome == "delivered" and e.code == 250 and e.attempt == 1
    assert (e.mx_host, e.mx_ip) == (f"mx1.{dest}", "127.0.0.2")
    assert e.source_ip.startswith("127.") and e.tls and e.tls_version.startswith("TLSv1.")
    assert (e.sender, e.sender_domain, e.account) == (ALICE, LOCAL_DOMAIN, ALICE)
    assert e.recipient == f"f@{dest}" and e.queue_id and e.message_id.startswith("evt.")
    assert e.latency_ms >= 0 and e.route == "mx"
    assert events(srv, account=ALICE, outcome="delivered")[-1].queue_id == e.queue_id
