"""Scriptable SMTP servers ("sinks") on loopback addresses, for outbound-delivery tests.

A SinkServer runs aiosmtpd in its own thread and event loop, bound to one loopback IP
(127.0.0.2, 127.0.0.3, ...) and a port: 0 picks a free one; pass another sink's port to
put several sinks on one port number, as MX hosts on port 25 would be. STARTTLS is offered
with a self-signed certificate made for the sink.

Its Behaviour can be changed while it runs (``sink.configure(drop_at="mail")``); each
connection reads it afresh at every step. Accepted messages are recorded as Received;
``connections`` and ``transactions`` (MAIL commands) are counted. Usage::

    with SinkServer("127.0.0.2") as a, SinkServer("127.0.0.3", a.port) as b:
        b.configure(reject_rcpts={"nobody@dest.test"})
        ...
        [msg] = a.wait_for(1)

AUTH PLAIN/LOGIN is offered after STARTTLS and checks ``logins``.

Stages (for ``drop_at``, ``garbage_at``, ``delay_at``): "greeting", "ehlo", "helo",
"starttls", "mail", "rcpt", "data" (the 354 reply), "dot" (the reply to the final dot),
"rset", "quit".
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailwarden.tlsconf import generate_self_signed, server_context


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes  # as received, dot-unstuffed, CRLF line endings as sent
    tls: bool
    helo: str
    peer: str
    mail_options: list[str] = field(default_factory=list)
    login: str = ""  # the AUTH user name, "" if the client did not authenticate


@dataclass(frozen=True)
class Behaviour:
    greeting: str = ""  # e.g. "554 5.7.1 go away": sent instead of the 220, then closes
    starttls: str = "offer"  # "offer" | "none" (not offered) | "refuse" (454) | "broken"
    ehlo: bool = True  # False: EHLO gets "502 5.5.1", the client must fall back to HELO
    tempfail_first: int = 0  # the first N transactions get tempfail_reply ...
    tempfail_at: str = "rcpt"  # ... at "rcpt" (every recipient), "data" (354) or "dot"
    tempfail_reply: str = "451 4.3.0 try again later"
    reject_rcpts: frozenset[str] = frozenset()  # these get "550 5.1.1 no such user"
    data_reply: str = ""  # replaces the 250 after the final dot, e.g. "554 5.7.1 spam"
    drop_at: str = ""  # close the connection instead of replying at this stage
    garbage_at: str = ""  # send `garbage` instead of the reply at this stage
    garbage: str = "hello there"
    delay: float = 0.0  # seconds before each reply ...
    delay_at: frozenset[str] = frozenset()  # ... at these stages (empty: every stage)
    smtputf8: bool = False
    size_limit: int = 10_000_000  # advertised as SIZE
    logins: frozenset[tuple[str, str]] = frozenset()  # AUTH (offered after TLS only)


class _Handler:
    def __init__(self, sink: SinkServer) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, name: str, lines: Any
    ) -> list[str]:
        if self.sink.behaviour.ehlo:
            session.host_name = name  # aiosmtpd leaves this to an EHLO hook
            return list(lines)
        session.extended_smtp = False
        return ["502 5.5.1 no EHLO here, say HELO"]

    async def handle_MAIL(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        server.txn = self.sink._count("transactions")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 sender ok"

    async def handle_RCPT(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        b = self.sink.behaviour
        if b.tempfail_at == "rcpt" and server.txn <= b.tempfail_first:
            return b.tempfail_reply
        if address.lower() in {r.lower() for r in b.reject_rcpts}:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 recipient ok"

    async def handle_DATA(self, server: _SinkSMTP, session: Session, envelope: Envelope) -> str:
        server.stage, server._fresh = "dot", True
        b = self.sink.behaviour
        if b.tempfail_at == "dot" and server.txn <= b.tempfail_first:
            return b.tempfail_reply
        if b.data_reply:
            return b.data_reply
        if b.drop_at == "dot" or b.garbage_at == "dot":
            return "250 2.0.0 never sent"  # the client never sees it: not recorded
        self.sink._record(
            Received(
                mail_from=envelope.mail_from or "",
                rcpts=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                tls=session.ssl is not None or server.sink.implicit_tls,
                helo=session.host_name or "",
                peer=str(session.peer[0]) if session.peer else "",
                mail_options=list(envelope.mail_options),
                login=_login(session),
            )
        )
        return "250 2.0.0 queued"


def _login(session: Session) -> str:
    data = session.auth_data
    return data.login.decode() if session.authenticated and isinstance(data, LoginPassword) else ""


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP with a stage marker and behaviour applied to every reply."""

    def __init__(self, sink: SinkServer, b: Behaviour) -> None:
        super().__init__(
            sink._handler,
            hostname=sink.hostname,
            ident="sink",
            tls_context=sink._tls if b.starttls != "none" and not sink.implicit_tls else None,
            enable_SMTPUTF8=b.smtputf8,
            data_size_limit=b.size_limit,
            timeout=30,
            authenticator=self._authenticate_login,
            auth_require_tls=not sink.implicit_tls,  # SMTPS is TLS from the start
            loop=asyncio.get_running_loop(),
        )
        self.sink = sink
        self.stage = "greeting"
        self.txn = 0
        self._fresh = True  # no reply sent yet for the current stage
        self._muted = ""  # the stage whose replies are suppressed (garbage sent)
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._staged(name.lower(), method)

    def _authenticate_login(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            (data.login.decode(), data.password.decode()) in self.sink.behaviour.logins
        )
        return AuthResult(success=ok, handled=False, auth_data=data)

    def _staged(
        self, stage: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def run(arg: str | None) -> None:
            self.stage, self._fresh = stage, True
            b = self.sink.behaviour
            if stage == "starttls" and b.starttls == "refuse":
                await self.push("454 4.7.0 TLS not available right now")
            elif stage == "starttls" and b.starttls == "broken":
                await self.push("220 2.0.0 go ahead")  # ... and then no TLS at all
                self._close()
            elif stage == "data" and b.tempfail_at == "data" and self.txn <= b.tempfail_first:
                await self.push(b.tempfail_reply)
                self._set_rset_state()  # the transaction is over
            else:
                await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.sink._count("connections")
            self.sink._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._live.discard(self)
        super().connection_lost(error)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.abort()

    async def push(self, status: str | bytes) -> None:
        b = self.sink.behaviour
        if self._muted == self.stage or self.transport is None:
            return
        if self._fresh and b.delay and (not b.delay_at or self.stage in b.delay_at):
            await asyncio.sleep(b.delay)
        self._fresh = False
        if b.drop_at == self.stage:
            self._muted = self.stage
            self._close()
        elif b.garbage_at == self.stage:
            self._muted = self.stage
            await super().push(b.garbage)
        elif self.stage == "greeting" and b.greeting:
            await super().push(b.greeting)
            self._close()
        else:
            await super().push(status)


class SinkServer:
    """One scriptable SMTP server in a background thread (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int = 0,
        *,
        hostname: str = "sink.test",
        behaviour: Behaviour | None = None,
        implicit_tls: bool = False,
    ) -> None:
        if not host.startswith("127.") and host != "::1":
            raise ValueError("sinks only listen on loopback addresses")
        self.host = host
        self.port = port
        self.hostname = hostname
        self.implicit_tls = implicit_tls  # TLS from the first byte (SMTPS, port 465)
        self.behaviour = behaviour or Behaviour()
        self.connections = 0
        self.transactions = 0
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._live: set[_SinkSMTP] = set()
        self._handler = _Handler(self)
        self._dir = Path(tempfile.mkdtemp(prefix="sink-"))
        self.cert = self._dir / "cert.pem"
        generate_self_signed(hostname, self.cert, self._dir / "key.pem")
        self._tls = server_context(self.cert, self._dir / "key.pem")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> SinkServer:
        self._thread.start()
        self._server = self._call(self._listen())
        return self

    async def _listen(self) -> asyncio.Server:
        server = await self._loop.create_server(
            lambda: _SinkSMTP(self, self.behaviour),
            self.host,
            self.port,
            ssl=self._tls if self.implicit_tls else None,
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._shutdown())
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed():
            self._loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for proto in list(self._live):
            proto._abort()
        await self._server.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # let transports finish closing

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- behaviour and records -------------------------------------------------------
    def configure(self, **changes: Any) -> Behaviour:
        """Change the behaviour (fields of Behaviour); sets are turned into frozensets."""
        for key in ("reject_rcpts", "delay_at"):
            value = changes.get(key)
            if isinstance(value, str):
                changes[key] = frozenset([value])
            elif isinstance(value, Iterable):
                changes[key] = frozenset(value)
        with self._cond:
            self.behaviour = dataclasses.replace(self.behaviour, **changes)
            return self.behaviour

    def reset(self) -> None:
        """Forget received messages and zero the counters (the behaviour stays)."""
        with self._cond:
            self._received.clear()
            self.connections = self.transactions = 0

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``count`` messages were accepted; AssertionError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.host}:{self.port} got {len(self._received)} messages, "
                        f"expected {count}"
                    )
                self._cond.wait(left)
            return list(self._received)

    def _record(self, msg: Received) -> None:
        with self._cond:
            self._received.append(msg)
            self._cond.notify_all()

    def _count(self, name: str) -> int:
        with self._cond:
            value = int(getattr(self, name)) + 1
            setattr(self, name, value)
            return value
