"""The MX listener as a client sees it: replies, limits, hostile input, local delivery."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Callable

import pytest

from mwserver import LOCAL_DOMAIN, ServerThread

MakeServer = Callable[..., ServerThread]

ALICE = f"alice@{LOCAL_DOMAIN}"
BOB = f"bob@{LOCAL_DOMAIN}"
MSG = b"From: <a@nowhere.test>\r\nTo: <alice@example.test>\r\nSubject: hi\r\n\r\nhello\r\n"


def connect(srv: ServerThread) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.port(), local_hostname="client.nowhere.test", timeout=30)
    s.ehlo()
    return s


def count(srv: ServerThread, user: str = ALICE, mailbox: str = "INBOX") -> int:
    return len(srv.call(srv.services.mailstore.messages(user, mailbox)))


class Raw:
    """A line-level SMTP client for input no library will send."""

    def __init__(self, srv: ServerThread) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port()), timeout=30)
        self.buf = b""
        self.banner = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines) or "<closed>"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, data: bytes) -> str:
        self.sock.sendall(data)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_ehlo_advertises_extensions(server: ServerThread) -> None:
    with connect(server) as s:
        for ext in (
            "size",
            "8bitmime",
            "pipelining",
            "enhancedstatuscodes",
            "starttls",
            "smtputf8",
        ):
            assert s.has_extn(ext), ext
        assert not s.has_extn("auth")  # no AUTH on the MX listener
        assert s.esmtp_features["size"] == str(26_214_400)


def test_deliver_to_user_alias_plus_and_catchall(any_server: ServerThread) -> None:
    rcpts = [
        ALICE,
        f"postmaster@{LOCAL_DOMAIN}",
        f"Alice+lists@{LOCAL_DOMAIN}",
        "anyone@catchall.test",
    ]
    with connect(any_server) as s:
        for rcpt in rcpts:
            assert s.sendmail("a@nowhere.test", [rcpt], MSG) == {}
        # several recipients for one user in one transaction: stored once
        assert s.sendmail("a@nowhere.test", [ALICE, f"postmaster@{LOCAL_DOMAIN}"], MSG) == {}
        assert s.sendmail("a@nowhere.test", [ALICE, BOB], MSG) == {}
    assert count(any_server) == 6
    assert count(any_server, BOB) == 1
    msgs = any_server.call(any_server.services.mailstore.messages(ALICE, "INBOX"))
    assert [m.uid for m in msgs] == [1, 2, 3, 4, 5, 6]
    assert msgs[2].rcpt_to == f"Alice+lists@{LOCAL_DOMAIN}"
    assert msgs[0].headers.subject == "hi"
    assert len({m.modseq for m in msgs}) == 6
    boxes = {m.name: m for m in any_server.call(any_server.services.mailstore.mailboxes(ALICE))}
    assert set(boxes) == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
    assert boxes["INBOX"].messages == 6 and boxes["INBOX"].uidnext == 7
    assert boxes["Junk"].special_use == "\\Junk"


def test_unknown_user_and_relay(any_server: ServerThread) -> None:
    with connect(any_server) as s:
        s.mail("a@nowhere.test")
        code, text = s.rcpt(f"nobody@{LOCAL_DOMAIN}")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("someone@gmail.com")
        assert (code, text[:5]) == (554, b"5.7.1")
        assert s.rcpt(ALICE)[0] == 250


def test_recipient_limit(make_server: MakeServer) -> None:
    srv = make_server(limits={"max_recipients": 2})
    with connect(srv) as s:
        s.mail("a@nowhere.test")
        assert s.rcpt(ALICE)[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, text = s.rcpt(f"postmaster@{LOCAL_DOMAIN}")
        assert (code, text[:5]) == (452, b"4.5.3")


def transaction(r: Raw, rcpt: str, data: bytes) -> str:
    """MAIL/RCPT/DATA without SIZE=, so the limit is hit at the end of data."""
    assert r.cmd(b"MAIL FROM:<a@nowhere.test>\r\n").startswith("250")
    assert r.cmd(f"RCPT TO:<{rcpt}>\r\n".encode()).startswith("250")
    assert r.cmd(b"DATA\r\n").startswith("354")
    return r.cmd(data + b".\r\n")


def test_message_too_big(make_server: MakeServer) -> None:
    srv = make_server(limits={"max_message_size": 65536})
    r = Raw(srv)
    r.cmd(b"EHLO x.test\r\n")
    big = MSG + (b"y" * 998 + b"\r\n") * 70
    assert transaction(r, ALICE, big).startswith("552 5.3.4")
    # the session is still in sync and usable afterwards
    assert transaction(r, ALICE, MSG).startswith("250 2.0.0")
    # SIZE= declared too big is refused at MAIL FROM
    assert r.cmd(b"MAIL FROM:<a@nowhere.test> SIZE=99999999\r\n").startswith("552 5.3.4")
    r.close()
    assert count(srv) == 1


def test_quota(any_server: ServerThread) -> None:
    body = b"Subject: q\r\n\r\n" + b"z" * 12_000 + b"\r\n"
    r = Raw(any_server)
    r.cmd(b"EHLO x.test\r\n")
    assert transaction(r, BOB, body).startswith("250 2.0.0")  # 12 KB of 20 KB
    assert transaction(r, BOB, body).startswith("452 4.2.2")  # would be 24 KB
    r.cmd(b"RSET\r\n")
    # with SIZE= declared, the recipient is refused up front
    assert r.cmd(b"MAIL FROM:<a@nowhere.test> SIZE=9000\r\n").startswith("250")
    assert r.cmd(f"RCPT TO:<{BOB}>\r\n".encode()).startswith("452 4.2.2")
    r.close()
    assert count(any_server, BOB) == 1


def test_bare_lf_is_refused(server: ServerThread) -> None:
    r = Raw(server)
    try:
        assert r.cmd(b"EHLO x.test\r\n").startswith("250")
        assert r.cmd(b"MAIL FROM:<a@nowhere.test>\r\n").startswith("250 2.1.0")
        assert r.cmd(b"RCPT TO:<alice@example.test>\r\n").startswith("250 2.1.5")
        assert r.cmd(b"DATA\r\n").startswith("354")
        # SMTP smuggling attempt: <LF>.<CR><LF> followed by a second transaction
        reply = r.cmd(
            b"Subject: a\r\n\r\nx\n.\r\n"
            b"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\n.\r\n"
        )
        assert reply.startswith("550 5.5.2"), reply
        assert r.cmd(b"NOOP\r\n").startswith("250")
    finally:
        r.close()
    assert count(server) == 0


def test_bare_lf_normalized_when_configured(make_server: MakeServer) -> None:
    srv = make_server(inbound={"bare_newline": "normalize"})
    r = Raw(srv)
    r.cmd(b"EHLO x.test\r\n")
    r.cmd(b"MAIL FROM:<a@nowhere.test>\r\n")
    r.cmd(b"RCPT TO:<alice@example.test>\r\n")
    r.cmd(b"DATA\r\n")
    reply = r.cmd(b"Subject: a\n\nline1\nline2\r\n.\r\n")
    assert reply.startswith("250 2.0.0"), reply
    r.close()
    raw = srv.call(srv.services.mailstore.raw_message(ALICE, "INBOX", 1))
    assert raw.endswith(b"Subject: a\r\n\r\nline1\r\nline2\r\n")


@pytest.mark.parametrize(
    ("line", "prefix"),
    [
        (b"FOO\r\n", "500 5.5.2"),
        (b"MAIL FROM:<a@nowhere.test>\x00\r\n", "5"),
        (b"\x00\x01\x02\r\n", "500 5.5.2"),
        (b"RCPT TO:<alice@example.test>\r\n", "503 5.5.1"),
        (b"DATA\r\n", "503 5.5.1"),
        (b"MAIL FROM:<not an address>\r\n", "553 5.1.7"),
        (b"MAIL FROM:<a@b@c>\r\n", "5"),
        (b"MAIL FROM:" + b"a" * 5000 + b"\r\n", "500 5.5.2"),
        (b"X" * 100_000 + b"\r\n", "500 5.5.2"),
        (b"MAIL FROM:<\xff\xfe@nowhere.test>\r\n", "5"),
    ],
)
def test_garbage_gets_an_error_and_the_server_lives(
    server: ServerThread, line: bytes, prefix: str
) -> None:
    r = Raw(server)
    try:
        assert r.cmd(b"EHLO x.test\r\n").startswith("250")
        reply = r.cmd(line)
        assert reply.startswith(prefix), reply
        assert r.cmd(b"NOOP\r\n").startswith("250")
    finally:
        r.close()
    with connect(server) as s:
        assert s.noop()[0] == 250


def test_pipelined_transaction(server: ServerThread) -> None:
    r = Raw(server)
    try:
        r.cmd(b"EHLO x.test\r\n")
        r.sock.sendall(
            b"MAIL FROM:<a@nowhere.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nDATA\r\n"
        )
        assert r.reply().startswith("250 2.1.0")
        assert r.reply().startswith("250 2.1.5")
        assert r.reply().startswith("550 5.1.1")
        assert r.reply().startswith("354")
        r.sock.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert r.reply().startswith("250 2.0.0")
        assert r.reply().startswith("221 2.0.0")
    finally:
        r.close()
    assert count(server) == 1


def test_connection_limit_per_ip(make_server: MakeServer) -> None:
    srv = make_server(limits={"max_connections_per_ip": 2})
    a, b = Raw(srv), Raw(srv)
    assert a.banner.startswith("220") and b.banner.startswith("220")
    c = Raw(srv)
    assert c.banner.startswith("421 4.7.0"), c.banner
    c.close()
    a.close()
    deadline = time.monotonic() + 10
    while True:
        d = Raw(srv)
        ok = d.banner.startswith("220")
        d.close()
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ok
    b.close()


def test_starttls_with_swaks(server: ServerThread) -> None:
    swaks = shutil.which("swaks")
    assert swaks, "swaks is required: apt-get install swaks"
    out = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{server.port()}",
            "--tls",
            "--to",
            ALICE,
            "--from",
            "someone@nowhere.test",
            "--helo",
            "client.nowhere.test",
            "--header",
            "Subject: via swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<~  220 TLS go ahead" in out.stdout or "STARTTLS" in out.stdout
    raw = server.call(server.services.mailstore.raw_message(ALICE, "INBOX", 1))
    assert b"Subject: via swaks" in raw
    assert b"with ESMTPS (TLSv1." in raw


def test_idle_timeout_closes_the_session(make_server: MakeServer) -> None:
    srv = make_server(limits={"idle_timeout": 1})
    r = Raw(srv)
    try:
        assert r.cmd(b"EHLO x.test\r\n").startswith("250")
        assert r.reply().startswith("421 4.4.2")  # nothing sent for 1 s
        assert r.reply() == "<closed>"
    finally:
        r.close()


def test_smtputf8_address(server: ServerThread) -> None:
    acc = server.services.accounts
    server.call(acc.add_user(f"jörg@{LOCAL_DOMAIN}", "correct horse battery"))
    msg = "From: <ünï@nowhere.test>\r\nSubject: grüße\r\n\r\nhallo\r\n".encode()
    with connect(server) as s:
        assert s.has_extn("smtputf8")
        s.sendmail("ünï@nowhere.test", [f"jörg@{LOCAL_DOMAIN}"], msg, mail_options=["SMTPUTF8"])
    raw = server.call(server.services.mailstore.raw_message(f"jörg@{LOCAL_DOMAIN}", "INBOX", 1))
    assert b"with UTF8ESMTP" in raw
    assert raw.endswith("Subject: grüße\r\n\r\nhallo\r\n".encode())


def test_shutdown_finishes_data_and_closes_idle_sessions(make_server: MakeServer) -> None:
    srv = make_server()
    idle, busy = Raw(srv), Raw(srv)
    busy.cmd(b"EHLO x.test\r\n")
    busy.cmd(b"MAIL FROM:<a@nowhere.test>\r\n")
    busy.cmd(b"RCPT TO:<alice@example.test>\r\n")
    assert busy.cmd(b"DATA\r\n").startswith("354")
    busy.sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
    stopping = asyncio.run_coroutine_threadsafe(srv.app.stop(grace=10), srv.loop)
    assert idle.reply().startswith("421 4.3.2")  # idle: told and closed at once
    time.sleep(0.3)
    assert not stopping.done()  # still waiting for the message in DATA
    reply = busy.cmd(b"second half\r\n.\r\n")
    assert reply.startswith("250 2.0.0"), reply  # acknowledged only once committed
    assert busy.reply().startswith("421 4.3.2")
    stopping.result(30)
    idle.close()
    busy.close()


def test_implicit_tls_listener(make_server: MakeServer) -> None:
    srv = make_server(
        listeners={
            "smtps": {"protocol": "smtp", "address": "127.0.0.1", "port": 0, "tls": "implicit"}
        }
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the embedded default's self-signed certificate
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("smtps"), context=ctx, timeout=30) as s:
        s.ehlo()
        assert not s.has_extn("starttls")  # already encrypted
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
        assert s.sendmail("a@nowhere.test", [ALICE], MSG) == {}
    raw = srv.call(srv.services.mailstore.raw_message(ALICE, "INBOX", 1))
    assert b"with ESMTPS (TLSv1." in raw
