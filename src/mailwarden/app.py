"""Composition root: builds store, resolver, clock and listeners; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass, field
from typing import Any

from mailwarden.auth.dmarc import load_psl
from mailwarden.config.schema import Listener, Settings
from mailwarden.core.clock import Clock, SystemClock
from mailwarden.delivery.local import LocalDelivery
from mailwarden.dns.resolver import DnsPythonResolver, Resolver
from mailwarden.services.accounts import AccountService
from mailwarden.services.mailstore import MailstoreService
from mailwarden.smtp.inbound import InboundHandler
from mailwarden.smtp.server import ConnectionGate, MailwardenSMTP, SessionLimits
from mailwarden.store.blobs import BlobStore
from mailwarden.store.db import Database, default_url
from mailwarden.store.sql import SqlStore
from mailwarden.tlsconf import generate_self_signed, server_context

log = logging.getLogger("mailwarden")

IMPLEMENTED_PROTOCOLS = {"smtp"}


@dataclass
class Services:
    """What the protocol layers and the CLI use; built once per process."""

    db: Database
    store: SqlStore
    blobs: BlobStore
    accounts: AccountService
    mailstore: MailstoreService
    local: LocalDelivery
    resolver: Resolver
    clock: Clock


async def build_services(
    settings: Settings, *, clock: Clock | None = None, resolver: Resolver | None = None
) -> Services:
    """Open the database (applying migrations) and wire the services together."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    db = Database(
        settings.storage.url or default_url(settings.data_dir),
        sqlite_synchronous=settings.storage.sqlite_synchronous,
    )
    await db.migrate()
    store = SqlStore(db)
    blobs = BlobStore(settings.data_dir / "blobs")
    resolver = resolver or DnsPythonResolver(
        settings.dns.nameservers, timeout=settings.dns.timeout, cache=settings.dns.cache
    )
    return Services(
        db=db,
        store=store,
        blobs=blobs,
        accounts=AccountService(store, clock, settings.inbound.default_quota),
        mailstore=MailstoreService(store, blobs),
        local=LocalDelivery(store, blobs, clock),
        resolver=resolver,
        clock=clock,
    )


@dataclass
class App:
    settings: Settings
    clock: Clock | None = None
    resolver: Resolver | None = None
    services: Services | None = None
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)

    async def start(self) -> None:
        self.services = await build_services(
            self.settings, clock=self.clock, resolver=self.resolver
        )
        await load_psl()  # the public suffix list, loaded once in a thread before mail arrives
        tls = self._tls_context()
        for name, listener in self.settings.listeners.items():
            if not listener.enabled:
                continue
            if listener.protocol not in IMPLEMENTED_PROTOCOLS:
                log.warning(
                    "listener %s: protocol %s is not available yet; not started",
                    name,
                    listener.protocol,
                )
                continue
            server = await self._start_smtp(name, listener, tls)
            self._servers.append(server)
        log.info(
            "mailwarden started: %s", ", ".join(f"{n}={h}:{p}" for n, (h, p) in self.bound.items())
        )

    def _tls_context(self) -> ssl.SSLContext:
        cert, key = self.settings.tls.cert, self.settings.tls.key
        assert cert is not None and key is not None
        if not cert.exists() or not key.exists():
            log.warning("no TLS certificate at %s; generating a self-signed one", cert)
            generate_self_signed(self.settings.hostname, cert, key)
        return server_context(cert, key)

    async def _start_smtp(
        self, name: str, listener: Listener, tls: ssl.SSLContext
    ) -> asyncio.Server:
        assert self.services is not None
        s = self.services
        limits = self.settings.limits
        handler = InboundHandler(self.settings, s.accounts, s.local, s.resolver, s.clock)
        session_limits = SessionLimits(
            max_message_size=limits.max_message_size,
            max_header_size=limits.max_header_size,
            bare_newline=self.settings.inbound.bare_newline,
            gate=ConnectionGate(limits.max_connections_per_ip, limits.max_connections),
        )
        kwargs: dict[str, Any] = {
            "hostname": self.settings.hostname,
            "ident": "mailwarden ESMTP",
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "timeout": limits.idle_timeout,
            "tls_context": tls if listener.tls == "starttls" else None,
        }
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: MailwardenSMTP(handler, limits=session_limits, loop=loop, **kwargs),
            host=None if listener.address == "*" else listener.address,
            port=listener.port,
            ssl=tls if listener.tls == "implicit" else None,
            reuse_address=True,
        )
        sock = server.sockets[0].getsockname()
        self.bound[name] = (str(sock[0]), int(sock[1]))
        return server

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except TimeoutError:
                log.warning("some sessions did not finish within 5 s")
        self._servers.clear()
        if self.services is not None:
            await self.services.db.close()
        log.info("mailwarden stopped")


async def run_forever(settings: Settings) -> None:
    """`mailwarden run`: start, then wait for SIGTERM or SIGINT and shut down cleanly."""
    app = App(settings)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY " + " ".join(f"{n}={h}:{p}" for n, (h, p) in app.bound.items()), flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop()
