"""aiosmtpd protocol subclass: bulk DATA, enhanced status codes, connection limits."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, TLSSetupException

from mailwarden.core import replies
from mailwarden.core.address import Address
from mailwarden.core.errors import InvalidAddress
from mailwarden.core.replies import Reply
from mailwarden.delivery.local import LocalTarget, fits_quota
from mailwarden.services.accounts import AccountService
from mailwarden.smtp.data import DataProblem, receive
from mailwarden.store.records import SentToken

log = logging.getLogger("mailwarden.smtp")

# "<local@domain>" then optional " PARAMS"; dot-atom local part (RFC 5321 §4.1.2,
# UTF-8 allowed per RFC 6531) and a plain domain.
_SIMPLE_ADDR = re.compile(
    r"\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+\.)*"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
    r"@[A-Za-z0-9\-\u0080-\U0010ffff]+(?:\.[A-Za-z0-9\-\u0080-\U0010ffff]+)*)>"
    r"(?:\s+(\S.*))?$"
)
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_CODE = re.compile(r"^(\d{3})([ -])(.*)$", re.S)
# RFC 3463 class defaults for replies aiosmtpd composes itself (RFC 2034 §3: every
# reply except the greeting and the EHLO/HELO reply carries an enhanced code).
_DEFAULT_ENHANCED = {
    221: "2.0.0",
    235: "2.7.0",
    250: "2.0.0",
    251: "2.1.5",
    252: "2.5.0",
    421: "4.3.0",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",
}


def add_enhanced_code(line: str) -> str:
    if _HAS_ENHANCED.match(line):
        return line
    m = _CODE.match(line)
    if not m:
        return line
    enhanced = _DEFAULT_ENHANCED.get(int(m.group(1)))
    if enhanced is None:
        return line
    text = m.group(3).removeprefix("Error: ")
    return f"{m.group(1)}{m.group(2)}{enhanced} {text}"


class GatedSession(Protocol):
    """What ConnectionGate needs of a session (SMTP or IMAP)."""

    busy: bool  # in the middle of something that should finish before shutdown

    def close_for_shutdown(self) -> None: ...


@dataclass
class ConnectionGate:
    """Counts live sessions per client IP and in total."""

    per_ip: int
    total: int
    counts: Counter[str] = field(default_factory=Counter)
    sessions: set[GatedSession] = field(default_factory=set)

    @property
    def live(self) -> int:
        return len(self.sessions)

    def admit(self, ip: str, session: GatedSession) -> bool:
        if self.live >= self.total or self.counts[ip] >= self.per_ip:
            return False
        self.counts[ip] += 1
        self.sessions.add(session)
        return True

    def release(self, ip: str, session: GatedSession) -> None:
        self.counts[ip] -= 1
        if self.counts[ip] <= 0:
            del self.counts[ip]
        self.sessions.discard(session)

    async def shutdown(self, grace: float) -> None:
        """Close idle sessions now; let those inside DATA finish (up to ``grace`` s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.sessions:
            for session in list(self.sessions):
                if not session.busy or loop.time() >= deadline:
                    session.close_for_shutdown()
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.05)


class MailEnvelope(Envelope):
    """aiosmtpd's envelope plus what our handlers learned at RCPT time."""

    def __init__(self) -> None:
        super().__init__()
        self.local_targets: list[LocalTarget] = []
        self.remote_rcpts: list[str] = []  # submission: recipients for the outbound queue
        self.returns: list[SentToken] = []  # MX: the messages returned DSNs are about
        self.data_problem: DataProblem = DataProblem.NONE


@dataclass(frozen=True)
class SessionLimits:
    max_message_size: int
    max_header_size: int
    bare_newline: str
    gate: ConnectionGate


class MailwardenSMTP(SMTP):
    # Commands are still limited to command_size_limit (RFC 5321 §4.5.3.1.4); this is
    # only the StreamReader buffer limit, raised so DATA can be read in big chunks.
    line_length_limit = 1 << 16

    def __init__(self, handler: Any, *, limits: SessionLimits, **kwargs: Any) -> None:
        super().__init__(handler, data_size_limit=limits.max_message_size, **kwargs)
        self.limits = limits
        self._admitted_ip: str | None = None
        self.busy = False  # inside DATA: from 354 until the final reply is sent
        self._refused = False
        self._in_ehlo = False
        self._pending_lines: list[str] = []

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ runs inspect.getmembers(self) and dir(self) on every
        # connection, only to find the auth_* and smtp_* methods; listing just those names
        # keeps it from evaluating ~150 attributes per connection.
        return list(_protocol_method_names(type(self)))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Fast path for the common ``<dot-atom@domain> [params]`` form.

        aiosmtpd parses every address with the email package's header parser (and defines
        a Protocol class on each call); plain addresses are matched here with the same
        result, anything else (quoted local parts, comments, odd spacing) still goes
        through aiosmtpd's parser.
        """
        m = _SIMPLE_ADDR.match(arg)
        if m is not None:
            return m.group(1), m.group(2) or ""
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result

    def _create_envelope(self) -> MailEnvelope:
        return MailEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "?"
            if self.limits.gate.admit(ip, self):
                self._admitted_ip = ip
            else:
                self._refused = True

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip is not None:
            self.limits.gate.release(self._admitted_ip, self)
            self._admitted_ip = None
        super().connection_lost(error)

    def close_for_shutdown(self) -> None:
        """RFC 5321 §3.8: tell the client we are going away, then close."""
        transport = self.transport
        if self._admitted_ip is not None and transport is not None:
            self.limits.gate.release(self._admitted_ip, self)
            self._admitted_ip = None
            if not transport.is_closing():
                transport.write(f"{replies.SHUTTING_DOWN}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()

    async def _handle_client(self) -> None:
        if self._refused:
            await self.push(str(replies.TOO_MANY_CONNECTIONS))
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client gave up on the STARTTLS handshake (scanners, verifying clients that
            # do not like the certificate): routine, not a server error. aiosmtpd closes
            # the connection without sending this reply.
            peer = self.session.peer if self.session is not None else None
            log.info("TLS handshake with %s failed: %s", _peer(peer), _tls_reason(error))
            return "454 4.7.0 TLS not available due to temporary reason"  # RFC 3207 §4
        result: str = await super().handle_exception(error)
        return result

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2: say why before closing an idle session (as Postfix does).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{replies.IDLE_TIMEOUT}\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if not self._in_ehlo:
                status = add_enhanced_code(status)
            if status[3:4] == "-":  # a multi-line reply: send it in one segment at its end
                self._pending_lines.append(status)
                return
            if self._pending_lines:
                status = "\r\n".join([*self._pending_lines, status])
                self._pending_lines.clear()
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push(str(replies.BAD_SEQUENCE.with_text("Need RCPT command")))
            return
        if arg:
            await self.push(str(replies.SYNTAX_ERROR.with_text("Syntax: DATA")))
            return
        self.busy = True
        try:
            await self._data_transaction(envelope)
        finally:
            self.busy = False

    async def _data_transaction(self, envelope: Envelope) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        result = await receive(
            self._reader,
            max_size=self.limits.max_message_size,
            max_header=self.limits.max_header_size,
            bare_newline=self.limits.bare_newline,
        )
        problem_reply = {
            DataProblem.TOO_BIG: replies.MESSAGE_TOO_BIG,
            DataProblem.BARE_NEWLINE: replies.BARE_NEWLINE,
            DataProblem.HEADER_TOO_BIG: replies.MESSAGE_TOO_BIG.with_text(
                "Message header too large"
            ),
        }.get(result.problem)
        if problem_reply is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(str(problem_reply))
            return
        envelope.content = result.content
        envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "?")


def _tls_reason(error: Exception) -> str:
    """What went wrong in the handshake aiosmtpd wrapped in TLSSetupException."""
    cause = error.__cause__ or error
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return str(cause.reason)
    if isinstance(cause, ConnectionError):
        return f"the client closed the connection ({type(cause).__name__})"
    return str(cause) or type(cause).__name__


def null_to_empty(address: str) -> str:
    """aiosmtpd hands the null reverse-path over as "<>"; we use "" (RFC 5321 §4.5.5:
    MAIL FROM:<> must be accepted, it is how DSNs arrive)."""
    return "" if address == "<>" else address


def check_sender(address: str) -> Address | Reply | None:
    """MAIL FROM's address: None for the null sender, else the parsed address or a 553."""
    address = null_to_empty(address)
    if not address:
        return None
    try:
        return Address.parse(address)
    except InvalidAddress as exc:
        return replies.BAD_SENDER_SYNTAX.with_text(f"Bad sender address: {exc}")


def check_recipient(envelope: Envelope, address: str, max_recipients: int) -> Address | Reply:
    """RCPT TO's address, or the reply refusing it (too many, or bad syntax)."""
    if len(envelope.rcpt_tos) >= max_recipients:
        return replies.TOO_MANY_RECIPIENTS  # RFC 5321 §4.5.3.1.10
    try:
        return Address.parse(address)
    except InvalidAddress as exc:
        return replies.BAD_RECIPIENT_SYNTAX.with_text(f"Bad recipient address: {exc}")


async def accept_local(
    accounts: AccountService, envelope: MailEnvelope, rcpt: Address, size: int
) -> Reply | None:
    """Who receives mail for a local ``rcpt``: adds them to the envelope, or returns the
    refusal (unknown user, or nobody with room for ``size`` bytes)."""
    found = await accounts.resolve(rcpt)
    if found is None:
        return replies.NO_SUCH_USER.with_text(f"No such user here: {rcpt}")
    current = await accounts.with_current_usage(found)
    if not any(fits_quota(u, size) for u in current):
        return replies.OVER_QUOTA.with_text(f"Mailbox of {rcpt} is full")
    envelope.local_targets.extend(LocalTarget(str(rcpt), u) for u in current)
    return None


def declared_size(options: list[str]) -> int:
    """The SIZE= MAIL parameter (RFC 1870), 0 when absent or invalid."""
    for opt in options:
        if opt.upper().startswith("SIZE="):
            try:
                return max(0, int(opt[5:]))
            except ValueError:
                return 0
    return 0


def ehlo_reply(responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO lines plus RFC 2920 PIPELINING and RFC 2034 ENHANCEDSTATUSCODES
    (aiosmtpd reads pipelined commands in order; MailwardenSMTP.push() adds the codes)."""
    lines = [r[4:] for r in responses if r[4:] != "HELP"]
    lines += ["PIPELINING", "ENHANCEDSTATUSCODES"]
    return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]


class HookNames:
    """Base for aiosmtpd handlers: aiosmtpd runs ``inspect.getmembers`` and ``dir`` on the
    handler at every connection to find its ``handle_*``/``auth_*`` hooks; listing only
    those keeps it from evaluating every attribute per connection."""

    def __dir__(self) -> list[str]:
        return [n for n in _protocol_method_names(type(self), ("auth_", "handle_"))]


_METHOD_NAMES: dict[tuple[type, tuple[str, ...]], list[str]] = {}


def _protocol_method_names(cls: type, prefixes: tuple[str, ...] = ("auth_", "smtp_")) -> list[str]:
    names = _METHOD_NAMES.get((cls, prefixes))
    if names is None:
        found = {n for k in cls.__mro__ for n in vars(k) if n.startswith(prefixes)}
        names = _METHOD_NAMES[(cls, prefixes)] = sorted(found)
    return names


def session_tls(server: Any) -> ssl.SSLObject | None:
    transport = getattr(server, "transport", None)
    if transport is None:
        return None
    obj = transport.get_extra_info("ssl_object")
    return obj if isinstance(obj, ssl.SSLObject) else None
