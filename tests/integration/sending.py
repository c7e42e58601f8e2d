"""Helpers for the sending tests: a server with submission listeners, sinks found through MX."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from email import message_from_bytes
from email.message import Message
from typing import Any

from dnsserver import KnotServer, txt, unique_domain
from mwserver import LOCAL_DOMAIN, PASSWORD, ServerThread

ALICE = f"alice@{LOCAL_DOMAIN}"
BOB = f"bob@{LOCAL_DOMAIN}"
SUBMISSION_LISTENERS = {
    "submission": {"protocol": "submission", "address": "127.0.0.1", "port": 0, "tls": "starttls"},
    "submissions": {"protocol": "submission", "address": "127.0.0.1", "port": 0, "tls": "implicit"},
}


def delivery(sink_port: int, **more: Any) -> dict[str, Any]:
    """delivery.* settings for tests: MX port of the sinks, fast polling and timeouts."""
    return {
        "mx_port": sink_port,
        "poll_interval": 0.05,
        "connect_timeout": 3,
        "command_timeout": 3,
        "reuse_idle": 1,
        **more,
    }


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx


def submit(
    srv: ServerThread,
    msg: bytes,
    rcpts: list[str],
    *,
    sender: str = ALICE,
    login: str = ALICE,
    implicit: bool = False,
) -> dict[str, tuple[int, bytes]]:
    """Log in as ``login`` on 587 (STARTTLS) or 465 and send ``msg``; returns refusals."""
    s: smtplib.SMTP
    if implicit:
        s = smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=client_tls(), timeout=30)
    else:
        s = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30)
        s.starttls(context=client_tls())
    with s:
        s.login(login, PASSWORD)
        return s.sendmail(sender, rcpts, msg)


def message(subject: str = "hello", sender: str = ALICE, to: str = "bob@dest.test") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}.{time.monotonic_ns()}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello Bob,\r\n\r\nthis is a test.\r\n"
    ).encode()


def mx_domain(dns: KnotServer, hint: str, *mx: tuple[int, str]) -> str:
    """A fresh recipient domain whose MX records point at loopback sink IPs."""
    domain = unique_domain(hint)
    records = []
    for i, (pref, ip) in enumerate(mx, 1):
        records += [f"@ MX {pref} mx{i}.{domain}.", f"mx{i} A {ip}"]
    dns.set_zone(domain, records)
    return domain


def publish_sender_dns(srv: ServerThread, dns: KnotServer) -> None:
    """Publish example.test's DKIM keys (and SPF/DMARC) where verifiers look them up."""
    keys = srv.call(srv.services.dkim.published(LOCAL_DOMAIN))
    lines = [f"{k.selector}._domainkey TXT {txt(_public(k.private_key))}" for k in keys]
    lines += ['@ TXT "v=spf1 ip4:127.0.0.0/8 -all"', '_dmarc TXT "v=DMARC1; p=reject"']
    dns.set_zone(LOCAL_DOMAIN, lines)


def _public(pem: str) -> str:
    from mailwarden.auth.dkim import dkim_txt_record

    return dkim_txt_record(pem.encode())


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(srv: ServerThread, **filters: str) -> list[Any]:
    return list(reversed(srv.call(srv.services.queue_admin.events(filters=filters))))


def inbox(srv: ServerThread, user: str = ALICE, mailbox: str = "INBOX") -> list[Message]:
    ms = srv.services.mailstore
    out = []
    for m in srv.call(ms.messages(user, mailbox)):
        out.append(message_from_bytes(srv.call(ms.raw_message(user, mailbox, m.uid))))
    return out
