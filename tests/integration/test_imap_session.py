"""IMAP connection, TLS, login and protocol errors, driven by imaplib and raw sockets."""

from __future__ import annotations

import base64
import imaplib
import socket
import ssl
from collections.abc import Callable

import pytest
from imapfix import ALICE, connect, imap_server, ok, tls

from mwserver import PASSWORD, ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def srv(make_server: MakeServer) -> ServerThread:
    return imap_server(make_server)


class Raw:
    """A line-level client for what imaplib will not send."""

    def __init__(self, srv: ServerThread, *, implicit: bool = False) -> None:
        port = srv.port("imaps" if implicit else "imap")
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket | ssl.SSLSocket = (
            tls().wrap_socket(sock, server_hostname="localhost") if implicit else sock
        )
        self.buf = b""
        self.greeting = self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: bytes, tag: bytes = b"t1") -> list[bytes]:
        """Send a command, collect lines up to its tagged reply (included)."""
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def starttls_login(self) -> None:
        assert self.cmd(b"STARTTLS")[-1].startswith(b"t1 OK")
        self.sock = tls().wrap_socket(self.sock, server_hostname="localhost")
        assert self.cmd(b"LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"')[
            -1
        ].startswith(b"t1 OK")

    def close(self) -> None:
        self.sock.close()


def test_greeting_before_tls_offers_starttls_and_disables_login(srv: ServerThread) -> None:
    r = Raw(srv)
    assert r.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    caps = r.cmd(b"CAPABILITY")[0].split()
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps
    assert not any(c.startswith(b"AUTH=") for c in caps)
    reply = r.cmd(b'LOGIN alice@example.test "' + PASSWORD.encode() + b'"')[-1]
    assert reply.startswith(b"t1 NO [PRIVACYREQUIRED]")
    reply = r.cmd(b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice@example.test\0x"))[-1]
    assert reply.startswith(b"t1 NO [PRIVACYREQUIRED]")
    r.close()


def test_starttls_then_login_and_capabilities_change(srv: ServerThread) -> None:
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    m.starttls(ssl_context=tls())
    caps = m.capability()[1][0].split()
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    typ, _ = m.login(ALICE, PASSWORD)
    assert typ == "OK"
    caps = ok(m.capability())[0].split()
    for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE"):
        assert cap in caps
    assert any(c.startswith(b"APPENDLIMIT=") for c in caps)
    m.logout()


def test_implicit_tls_and_authenticate_plain_with_initial_response(srv: ServerThread) -> None:
    r = Raw(srv, implicit=True)
    token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
    lines = r.cmd(b"AUTHENTICATE PLAIN " + token)
    assert lines[-1].startswith(b"t1 OK [CAPABILITY IMAP4rev1")
    r.close()


def test_authenticate_plain_with_continuation(srv: ServerThread) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=tls(), timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
    assert typ == "OK"
    assert ok(m.select("INBOX"))[0] == b"0"
    m.logout()


def test_wrong_password_is_refused_and_counted(srv: ServerThread) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=tls(), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(ALICE, "wrong password")
    lockouts = srv.call(srv.services.guard.lockouts(include_below=True))
    assert any(t.key == ALICE and t.failures == 1 for t, _locked in lockouts)
    m.logout()


def test_lockout_is_shared_with_submission_and_refuses_even_the_right_password(
    make_server: MakeServer,
) -> None:
    srv = imap_server(make_server, submission={"auth_failures_per_account": 2})
    for _ in range(2):
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=tls(), timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            m.login(ALICE, "nope")
        m.logout()
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=tls(), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        m.login(ALICE, PASSWORD)
    m.logout()
    srv.call(srv.services.guard.unlock(ALICE))
    connect(srv).logout()


def test_plaintext_networks_allow_login_without_tls(make_server: MakeServer) -> None:
    srv = imap_server(make_server, imap={"plaintext_auth_networks": ["127.0.0.0/8"]})
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    assert b"LOGINDISABLED" not in m.capability()[1][0]
    ok(m.login(ALICE, PASSWORD))
    m.logout()


def test_malformed_commands_get_bad_and_the_session_lives_on(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    cases = [
        b"FETCH",  # not valid before SELECT
        b"NOSUCHCOMMAND",
        b'SELECT "unterminated',
        b"SELECT INBOX (((((",
        b"LIST",
    ]
    for case in cases:
        assert r.cmd(case)[-1].startswith(b"t1 BAD"), case
    r.send(b"\r\n")  # an empty line
    assert r.line().startswith(b"* BAD")
    assert r.cmd(b"SELECT INBOX")[-1].startswith(b"t1 OK [READ-WRITE]")
    assert r.cmd(b"FETCH 5 FLAGS")[-1].startswith(b"t1 BAD")  # no message 5
    assert r.cmd(b"FETCH 1:x FLAGS")[-1].startswith(b"t1 BAD")
    assert r.cmd(b"NOOP")[-1].startswith(b"t1 OK")
    r.close()


def test_literal_over_the_limit_is_refused_before_it_is_sent(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    r.send(b"a1 APPEND INBOX {999999999999}\r\n")
    assert r.line().startswith(b"a1 BAD")
    assert r.cmd(b"NOOP")[-1].startswith(b"t1 OK")
    r.close()


def test_huge_nonsynchronizing_literal_closes_the_connection(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    r.send(b"a1 APPEND INBOX {999999999999+}\r\n")
    lines = [r.line(), r.line()]
    assert lines[0].startswith(b"a1 BAD") or lines[1].startswith(b"* BYE")
    r.close()


def test_logout_and_id_and_namespace(srv: ServerThread) -> None:
    m = connect(srv)
    typ, data = m.xatom("ID", '("name" "test-client")')
    assert typ == "OK"
    assert m.untagged_responses.pop("ID")[0].startswith(b'("name" "mailwarden"')
    typ, data = m.namespace()
    assert data[0] == b'(("" "/")) NIL NIL'
    typ, data = m.logout()
    assert typ == "BYE"


def test_enable_condstore_and_qresync(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    lines = r.cmd(b"ENABLE QRESYNC")
    assert lines[0] == b"* ENABLED CONDSTORE QRESYNC"
    lines = r.cmd(b"ENABLE QRESYNC UNKNOWN")
    assert lines[0] == b"* ENABLED"
    r.close()


def test_sixty_four_k_line_limit(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    r.send(b"a1 NOOP " + b"x" * 70_000 + b"\r\n")
    assert r.line().startswith(b"a1 BAD")
    assert r.cmd(b"NOOP")[-1].startswith(b"t1 OK")
    r.close()


def test_commands_pipelined_after_starttls_are_discarded(srv: ServerThread) -> None:
    """RFC 3501 §6.2.1 / the STARTTLS command-injection class of bugs: plaintext sent
    after STARTTLS must not be executed inside the TLS session."""
    r = Raw(srv)
    r.send(b"t1 STARTTLS\r\nt2 CAPABILITY\r\n")
    assert r.line().startswith(b"t1 OK")
    r.sock = tls().wrap_socket(r.sock, server_hostname="localhost")
    r.buf = b""
    lines = r.cmd(b"NOOP", b"t3")
    assert lines == [lines[-1]] and lines[-1].startswith(b"t3 OK")  # no reply to t2
    r.close()


def test_login_timeout_says_bye(make_server: MakeServer) -> None:
    srv = imap_server(make_server, imap={"login_timeout": 0.5})
    r = Raw(srv)
    assert r.line().startswith(b"* BYE")
    r.close()


def test_idle_done_with_a_pipelined_command(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    assert r.cmd(b"SELECT INBOX")[-1].startswith(b"t1 OK")
    r.send(b"i1 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"DONE\r\nn1 NOOP\r\n")
    assert r.line().startswith(b"i1 OK")
    assert r.line().startswith(b"n1 OK")
    r.send(b"i2 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"NOT-DONE\r\n")
    assert r.line().startswith(b"i2 BAD")
    assert r.cmd(b"NOOP")[-1].startswith(b"t1 OK")
    r.close()


def test_check_unselect_and_setquota(srv: ServerThread) -> None:
    r = Raw(srv)
    r.starttls_login()
    assert r.cmd(b"CHECK")[-1].startswith(b"t1 BAD")  # only in the selected state
    assert r.cmd(b"SELECT INBOX")[-1].startswith(b"t1 OK")
    assert r.cmd(b"CHECK")[-1].startswith(b"t1 OK")
    assert r.cmd(b"UNSELECT")[-1].startswith(b"t1 OK")
    assert r.cmd(b"FETCH 1 FLAGS")[-1].startswith(b"t1 BAD")  # no longer selected
    assert r.cmd(b'SETQUOTA "" (STORAGE 10)')[-1].startswith(b"t1 NO [NOPERM]")
    r.close()
