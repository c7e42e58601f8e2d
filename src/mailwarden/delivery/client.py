"""The outbound SMTP client (RFC 5321 client side) on aiosmtplib.

``connect`` walks the hops until one greets with 2xx and takes EHLO/HELO, negotiating TLS
on the way; ``OutboundConnection.send`` runs one transaction and never raises for network
or protocol trouble. We open the TCP socket ourselves (source address, connect timeout),
turn off aiosmtplib's automatic STARTTLS, and send MAIL/RCPT with ``execute_command`` so
addresses go out as given (``mail()``/``rcpt()`` re-parse them with ``parseaddr``).
``data()`` dot-stuffs and turns lone CR/LF into CRLF: CRLF messages go out byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

from mailwarden.delivery.mx import Hop
from mailwarden.delivery.smtp_replies import (
    Broken,
    ConnectFailure,
    ConnectionFacts,
    RemoteReply,
    TransactionResult,
    as_reply,
    no_reply,
    parse_reply,
)

__all__ = [
    "ConnectFailure",
    "ConnectionFacts",
    "OutboundConnection",
    "RemoteReply",
    "TransactionResult",
    "connect",
    "parse_reply",
]

TLS_MODES = ("opportunistic", "starttls", "implicit")
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")


@dataclass(frozen=True)
class _Options:
    helo: str
    source_address: str
    tls: str
    username: str
    password: str = field(repr=False)
    connect_timeout: float
    command_timeout: float
    data_timeout: float
    tls_context: ssl.SSLContext | None


@functools.cache
def _opportunistic_context() -> ssl.SSLContext:
    # RFC 7435 §1.3: opportunistic security encrypts without authenticating the peer.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # reads the system CA store: not on the loop


async def _tls_context(opts: _Options) -> ssl.SSLContext:
    """Required TLS (and any session with credentials) verifies the certificate, with
    the caller's context or the system CAs; opportunistic TLS never does (RFC 7435)."""
    if opts.tls == "opportunistic" and not opts.username:
        return _opportunistic_context()
    if opts.tls_context is not None:
        return opts.tls_context
    return await asyncio.to_thread(_verifying_context)


def _drop(smtp: aiosmtplib.SMTP) -> None:
    """Close now. aiosmtplib's close() is graceful, and a TLS transport then waits for
    the peer's close_notify; abort() releases the socket without waiting."""
    transport = smtp.transport
    smtp.close()
    if isinstance(transport, asyncio.Transport):
        transport.abort()


def _label(hop: Hop, ip: str) -> str:
    return f"{hop.host}[{ip}]:{hop.port}"


def _server_name(hop: Hop, ip: str) -> str:
    return ip if hop.host.startswith("[") else hop.host


async def _tcp(hop: Hop, ip: str, opts: _Options) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if opts.source_address:
            sock.bind((opts.source_address, 0))
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (ip, hop.port)), opts.connect_timeout)
    except BaseException as exc:  # OSError (TimeoutError too) or cancellation
        sock.close()
        if not isinstance(exc, OSError):
            raise
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        # RFC 3463 X.4.1: "No answer from host".
        raise no_reply("4.4.1", f"cannot connect to {_label(hop, ip)}: {reason}") from None
    return sock


async def _open(hop: Hop, ip: str, opts: _Options, *, implicit: bool) -> aiosmtplib.SMTP:
    """TCP connect, (implicit TLS,) read the greeting (RFC 5321 §3.1: 220 or go away)."""
    sock = await _tcp(hop, ip, opts)
    smtp = aiosmtplib.SMTP(
        hostname=_server_name(hop, ip),  # with sock=: only the TLS server name (SNI)
        local_hostname=opts.helo,
        timeout=opts.command_timeout,
        use_tls=implicit,
        start_tls=False,  # aiosmtplib >= 3 would upgrade on its own otherwise
        tls_context=await _tls_context(opts) if implicit else None,
        sock=sock,  # from here on asyncio owns (and closes) the socket
    )
    try:
        await smtp.connect(timeout=opts.command_timeout)
    except (aiosmtplib.SMTPException, OSError) as exc:
        _drop(smtp)
        raise Broken(as_reply(exc, f"in greeting from {_label(hop, ip)}")) from None
    return smtp


async def _hello(smtp: aiosmtplib.SMTP, opts: _Options) -> None:
    try:
        await smtp.ehlo(hostname=opts.helo)
    except aiosmtplib.SMTPHeloError as exc:
        if not (500 <= exc.code < 600 and smtp.is_connected):
            raise
        # RFC 5321 §4.1.4 / §3.2: a server that rejects EHLO may still take HELO.
        await smtp.helo(hostname=opts.helo)


async def _starttls(smtp: aiosmtplib.SMTP, hop: Hop, ip: str, opts: _Options) -> bool:
    """RFC 3207. True: encrypted; False: plaintext on this connection (opportunistic and
    refused). Broken: this connection is spoiled, or TLS is required and failed."""
    required = opts.tls == "starttls" or bool(opts.username)
    if not smtp.supports_extension("starttls"):
        if required:  # RFC 3463 X.7.4 "Security features not supported" (as Postfix)
            raise no_reply("4.7.4", f"{_label(hop, ip)} does not offer STARTTLS")
        return False
    try:
        await smtp.starttls(
            server_hostname=_server_name(hop, ip), tls_context=await _tls_context(opts)
        )
    except aiosmtplib.SMTPResponseException as exc:
        # RFC 3207 §4: on a refusal the client may go on without TLS, or give up.
        reply = as_reply(exc, f"to STARTTLS at {_label(hop, ip)}")
        if required or reply.code is None or not smtp.is_connected:
            raise Broken(reply) from None
        return False
    except (aiosmtplib.SMTPException, OSError) as exc:  # handshake failed (ssl.SSLError too)
        _drop(smtp)
        # RFC 3463 X.7.5 "Cryptographic failure".
        raise no_reply("4.7.5", f"TLS handshake with {_label(hop, ip)} failed: {exc}") from None
    await _hello(smtp, opts)  # RFC 3207 §4.2: forget the old EHLO, ask again
    return True


async def _login(smtp: aiosmtplib.SMTP, opts: _Options) -> None:
    """RFC 4954 AUTH, PLAIN or LOGIN; only ever called on a TLS session."""
    methods = smtp.server_auth_methods
    if "plain" in methods:
        await smtp.auth_plain(opts.username, opts.password)
    elif "login" in methods:
        await smtp.auth_login(opts.username, opts.password)
    else:
        raise no_reply("4.7.4", "the server offers neither AUTH PLAIN nor AUTH LOGIN")


def _facts(smtp: aiosmtplib.SMTP, hop: Hop, ip: str, tls: bool) -> ConnectionFacts:
    sockname = smtp.get_transport_info("sockname")
    ssl_object = smtp.get_transport_info("ssl_object")
    version = ssl_object.version() if tls and ssl_object is not None else ""
    source = str(sockname[0]) if sockname else ""
    return ConnectionFacts(hop.host, ip, source, tls, version or "")


async def _session(hop: Hop, ip: str, opts: _Options, *, try_tls: bool) -> OutboundConnection:
    """Greeting, EHLO, TLS, AUTH. _Plaintext: reconnect without TLS (opportunistic)."""
    implicit = opts.tls == "implicit"
    smtp = await _open(hop, ip, opts, implicit=implicit)
    try:
        await _hello(smtp, opts)
        secure = implicit
        if not implicit and try_tls:
            try:
                secure = await _starttls(smtp, hop, ip, opts)
            except Broken as exc:
                if opts.tls == "starttls" or opts.username:
                    raise
                raise _Plaintext(exc.reply) from None
        if opts.username:
            if not secure:  # credentials never go out in plaintext
                raise no_reply("4.7.4", "not sending credentials without TLS")
            await _login(smtp, opts)
        return OutboundConnection(smtp, _facts(smtp, hop, ip, secure), opts)
    except (aiosmtplib.SMTPException, OSError) as exc:
        _drop(smtp)
        raise Broken(as_reply(exc, f"at {_label(hop, ip)}")) from None
    except BaseException:
        _drop(smtp)
        raise


class _Plaintext(Broken):
    """Opportunistic TLS failed in a way that spoiled the connection: reconnect without."""


async def _try_ip(hop: Hop, ip: str, opts: _Options) -> OutboundConnection:
    try:
        return await _session(hop, ip, opts, try_tls=True)
    except _Plaintext:
        # RFC 7435 §1.3 / Postfix "may": the same address again, in plaintext.
        return await _session(hop, ip, opts, try_tls=False)


async def connect(
    hops: list[Hop],
    *,
    helo: str,
    source_address: str = "",
    tls: str = "opportunistic",
    username: str = "",
    password: str = "",
    connect_timeout: float,
    command_timeout: float,
    data_timeout: float | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> OutboundConnection:
    """The first hop/address, in order, that greets with 2xx and takes EHLO or HELO.

    RFC 5321 §5.1: each MX host in turn, each of its addresses; a 4xx/5xx greeting moves
    on too (Postfix's smtp_skip_5xx_greeting). ``data_timeout`` bounds the wait after
    the final dot (default ``command_timeout``; RFC 5321 §4.5.3.2.6 suggests 10 min).
    ``tls_context`` verifies required TLS; the default trusts the system CAs.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}")
    opts = _Options(
        helo=helo,
        source_address=source_address,
        tls=tls,
        username=username,
        password=password,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        data_timeout=command_timeout if data_timeout is None else data_timeout,
        tls_context=tls_context,
    )
    tried: list[str] = []
    last = RemoteReply(None, "4.4.4", "no host to connect to")
    for hop in hops:
        try:
            ips = hop.ips
        except Broken as exc:
            tried.append(hop.host)
            last = exc.reply
            continue
        for ip in ips:
            tried.append(_label(hop, ip))
            try:
                return await _try_ip(hop, ip, opts)
            except Broken as exc:
                last = exc.reply
    raise ConnectFailure(last, tried)


class OutboundConnection:
    """One SMTP session; ``send`` may be called again while ``usable`` (connection reuse)."""

    def __init__(self, smtp: aiosmtplib.SMTP, facts: ConnectionFacts, opts: _Options) -> None:
        self._smtp = smtp
        self.facts = facts
        self._timeout = opts.command_timeout
        self._data_timeout = opts.data_timeout
        self._broken = False
        # False after a send() whose MAIL FROM got no reply: on a reused connection that
        # means the server had closed it while idle, and the transaction can be retried.
        self.mail_answered = False
        self._where = f"{facts.mx_host}[{facts.mx_ip}]"
        self._sock: socket.socket | None = smtp.get_transport_info("socket")

    @property
    def usable(self) -> bool:
        return not self._broken and self._smtp.is_connected

    def supports(self, extension: str) -> bool:
        """Whether the server's (latest) EHLO reply lists ``extension``."""
        return self._smtp.supports_extension(extension)

    async def send(self, mail_from: str, rcpts: list[str], data: bytes) -> TransactionResult:
        """One mail transaction. Never raises for network or protocol trouble: every
        recipient gets the reply that decided it (or a code-None reply)."""
        started = time.monotonic()
        replies: dict[str, RemoteReply] = {}
        todo = self._refuse_locally(mail_from, list(dict.fromkeys(rcpts)), data, replies)
        self.mail_answered = False
        try:
            if todo and not self.usable:
                raise no_reply("4.4.2", f"connection to {self._where} is no longer usable")
            if todo:
                await self._transaction(mail_from, todo, data, replies)
        except Broken as exc:
            self._abandon()
            for rcpt in todo:
                replies.setdefault(rcpt, exc.reply)
        except BaseException:  # cancelled mid-transaction: the session state is unknown
            self._abandon()
            raise
        return TransactionResult(replies, round((time.monotonic() - started) * 1000))

    def _refuse_locally(
        self, mail_from: str, rcpts: list[str], data: bytes, replies: dict[str, RemoteReply]
    ) -> list[str]:
        """Fill in what we know without asking (syntax, SMTPUTF8, SIZE); return the rest."""
        whole = self._address_problem(mail_from, sender=True) or self._size_problem(data)
        for rcpt in rcpts:
            if problem := whole or self._address_problem(rcpt, sender=False):
                replies[rcpt] = problem
        return [r for r in rcpts if r not in replies]

    def _address_problem(self, addr: str, *, sender: bool) -> RemoteReply | None:
        if _BAD_ADDRESS.search(addr) or (" " in addr and not addr.startswith('"')):
            # RFC 3463 X.1.7 bad sender / X.1.3 bad destination mailbox address syntax.
            return RemoteReply(553, "5.1.7" if sender else "5.1.3", f"invalid address <{addr}>")
        if not sender and not addr:
            return RemoteReply(553, "5.1.3", "empty recipient address")
        if not addr.isascii() and not self.supports("smtputf8"):
            # RFC 6531 §3.2: no non-ASCII envelope to a server without SMTPUTF8;
            # §3.5 / RFC 5248: X.6.7 "Non-ASCII addresses not permitted".
            who = "sender" if sender else "recipient"
            return RemoteReply(
                553, "5.6.7", f"non-ASCII {who} address but {self._where} lacks SMTPUTF8"
            )
        return None

    def _size_problem(self, data: bytes) -> RemoteReply | None:
        limit = self._smtp.esmtp_extensions.get("size", "").strip()
        if limit.isdigit() and 0 < int(limit) < len(data):
            # RFC 1870 §6: do not send what the server said it will not take.
            return RemoteReply(552, "5.3.4", f"message larger than {self._where} accepts")
        return None

    def _mail_options(self, data: bytes, utf8: bool) -> list[bytes]:
        options = []
        if self.supports("size"):
            options.append(f"SIZE={len(data)}".encode())  # RFC 1870 §3
        if utf8:
            options.append(b"SMTPUTF8")  # RFC 6531 §3.4
        if (utf8 or not data.isascii()) and self.supports("8bitmime"):
            options.append(b"BODY=8BITMIME")  # RFC 6152 §3
        # Without 8BITMIME, 8-bit data goes as is (like Postfix): converting it would
        # break DKIM signatures, and in practice every server takes it.
        return options

    async def _transaction(
        self, mail_from: str, rcpts: list[str], data: bytes, replies: dict[str, RemoteReply]
    ) -> None:
        utf8 = not (mail_from.isascii() and all(r.isascii() for r in rcpts))
        enc = "utf-8" if utf8 else "ascii"
        options = self._mail_options(data, utf8)
        reply = await self._cmd(b"MAIL", b"FROM:<" + mail_from.encode(enc) + b">", *options)
        self.mail_answered = True
        if not reply.success:  # RFC 5321 §3.3: no transaction; it applies to everyone
            replies.update(dict.fromkeys(rcpts, reply))
            return
        accepted = []
        for rcpt in rcpts:
            reply = await self._cmd(b"RCPT", b"TO:<" + rcpt.encode(enc) + b">")
            if reply.success:
                accepted.append(rcpt)  # decided by the reply to DATA
            else:
                replies[rcpt] = reply
        if not accepted:
            await self._rset()  # RFC 5321 §3.3: no valid recipient → no DATA; reset
            return
        reply = await self._data(data)
        replies.update(dict.fromkeys(accepted, reply))  # RFC 5321 §4.2.5: one reply for all
        if not reply.success:
            # aiosmtplib cannot tell a refused DATA from a refused final dot; only after
            # the dot is the transaction surely over, so reset before any reuse.
            await self._rset()

    async def _cmd(self, *args: bytes) -> RemoteReply:
        what = args[0].decode()
        try:
            resp = await self._smtp.execute_command(*args, timeout=self._timeout)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise Broken(as_reply(exc, f"after {what} at {self._where}")) from None
        return self._check(resp.code, resp.message, what)

    def _check(self, code: int, message: str, what: str, success_ok: bool = True) -> RemoteReply:
        if code // 100 not in ((2, 4, 5) if success_ok else (4, 5)):
            # A reply of another class here is a protocol violation: stop trusting it.
            text = f"unexpected reply to {what} from {self._where}: {code} {message}"
            raise no_reply("4.5.0", text)
        reply = parse_reply(code, message)
        if code == 421:  # RFC 5321 §3.8: the server is closing the session
            raise Broken(reply)
        return reply

    async def _data(self, data: bytes) -> RemoteReply:
        try:
            resp = await self._smtp.data(data, timeout=self._data_timeout)
        except aiosmtplib.SMTPDataError as exc:
            # For a non-354 reply to DATA and a non-250 reply to the dot; a 2xx or 3xx
            # here cannot be placed, so _check makes it a protocol error, never success.
            return self._check(exc.code, exc.message, "DATA", success_ok=False)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise Broken(as_reply(exc, f"after DATA at {self._where}")) from None
        return self._check(resp.code, resp.message, "DATA")

    async def _rset(self) -> None:
        reply = await self._cmd(b"RSET")  # RFC 5321 §4.1.1.5
        if not reply.success:
            raise Broken(reply)

    def _abandon(self) -> None:
        self._broken = True
        _drop(self._smtp)

    async def close(self, grace: float = 2.0) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), waiting at most ``grace`` s, then close
        and give asyncio a moment to release the socket."""
        if self.usable:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, ValueError):
                await self._smtp.quit(timeout=grace)
        self._abandon()
        for _ in range(200):  # usually one or two loop iterations
            if self._sock is None or self._sock.fileno() == -1:
                break
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> OutboundConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
