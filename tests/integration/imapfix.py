"""Helpers for the IMAP tests: a server with IMAP listeners, real clients, SMTP delivery.

Clients are the independent ones named by the issue: Python's ``imaplib`` and the
``imapclient`` package. Every connection logs in over TLS (STARTTLS on the "imap"
listener, implicit TLS on "imaps"), as a real client would; the test certificate is
self-signed, so verification is off.
"""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
from collections.abc import Callable
from typing import Any

from imapclient import IMAPClient

from mwserver import LOCAL_DOMAIN, PASSWORD, ServerThread

ALICE = f"alice@{LOCAL_DOMAIN}"
BOB = f"bob@{LOCAL_DOMAIN}"
IMAP_LISTENERS: dict[str, Any] = {
    "imap": {"protocol": "imap", "address": "127.0.0.1", "port": 0, "tls": "starttls"},
    "imaps": {"protocol": "imap", "address": "127.0.0.1", "port": 0, "tls": "implicit"},
}
IMAP_SETTINGS: dict[str, Any] = {"auth_failure_delay": 0}


def tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx


def imap_server(make_server: Callable[..., ServerThread], **extra: Any) -> ServerThread:
    imap = {**IMAP_SETTINGS, **extra.pop("imap", {})}
    return make_server(listeners=IMAP_LISTENERS, imap=imap, **extra)


def connect(srv: ServerThread, user: str = ALICE, *, implicit: bool = False) -> imaplib.IMAP4:
    """imaplib, logged in over TLS."""
    m: imaplib.IMAP4
    if implicit:
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=tls(), timeout=30)
    else:
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
        m.starttls(ssl_context=tls())
    m.login(user, PASSWORD)
    return m


def client(srv: ServerThread, user: str = ALICE) -> IMAPClient:
    """imapclient, logged in on the implicit-TLS port."""
    c = IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl=True, ssl_context=tls(), timeout=30)
    c.login(user, PASSWORD)
    return c


def message(subject: str, body: str = "Hello,\r\n\r\nthis is a test.\r\n", **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"From: Carol <carol@sender.test>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n"
        f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}.{time.monotonic_ns()}@sender.test>\r\n"
        f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def deliver(srv: ServerThread, raw: bytes, to: str = ALICE) -> None:
    """Deliver over SMTP to the MX listener (the path real mail takes)."""
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=30) as s:
        s.sendmail("", [to], raw)


def append(m: imaplib.IMAP4, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> int:
    """APPEND; returns the new UID from APPENDUID."""
    typ, data = m.append(mailbox, flags or None, None, raw)
    assert typ == "OK", data
    text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
    return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))


def ok(result: tuple[str, Any]) -> Any:
    typ, data = result
    assert typ == "OK", data
    return data
