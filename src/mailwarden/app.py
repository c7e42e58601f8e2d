"""Composition root: builds store, resolver, clock and listeners; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailwarden.auth.dmarc import load_psl
from mailwarden.config.schema import Listener, Settings
from mailwarden.core.clock import Clock, SystemClock
from mailwarden.delivery.local import LocalDelivery
from mailwarden.delivery.runner import QueueRunner
from mailwarden.dns.resolver import DnsPythonResolver, Resolver
from mailwarden.imap.context import ImapContext
from mailwarden.imap.session import ImapSession
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.classify import Classifier
from mailwarden.reputation.engine import ReputationEngine
from mailwarden.reputation.pauses import Pauses
from mailwarden.reputation.policy.limits import LimitsTable
from mailwarden.reputation.policy.warmup import load_schedules
from mailwarden.reputation.providers import ProviderMap
from mailwarden.services.accounts import AccountService
from mailwarden.services.audit import AuditService
from mailwarden.services.authguard import AuthGuard
from mailwarden.services.bounces import BounceService
from mailwarden.services.dkim_keys import DkimService
from mailwarden.services.folders import FolderService
from mailwarden.services.mailstore import MailstoreService
from mailwarden.services.messages import MessageService
from mailwarden.services.notify import PollingNotifier
from mailwarden.services.queue import QueueService
from mailwarden.services.search_index import SearchIndexer
from mailwarden.services.sending import SendingService
from mailwarden.services.tenants import TenantGuard
from mailwarden.smtp.inbound import InboundHandler
from mailwarden.smtp.server import ConnectionGate, MailwardenSMTP, SessionLimits
from mailwarden.smtp.submission import SubmissionHandler, SubmissionSMTP
from mailwarden.store.blobs import BlobStore
from mailwarden.store.db import Database, default_url
from mailwarden.store.events_sql import EventStore
from mailwarden.store.folders_sql import FolderStore
from mailwarden.store.keys_sql import AuthFailureStore, DkimKeyStore
from mailwarden.store.messages_sql import MessageStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.records import Delivered
from mailwarden.store.reputation_sql import ReputationStore
from mailwarden.store.search_sql import SearchIndexStore
from mailwarden.store.sql import SqlStore
from mailwarden.tlsconf import generate_self_signed, server_context

log = logging.getLogger("mailwarden")

IMPLEMENTED_PROTOCOLS = {"smtp", "submission", "imap"}
SHUTDOWN_GRACE = 10.0  # seconds a message in DATA gets to finish when we stop


@dataclass
class Services:
    """What the protocol layers and the CLI use; built once per process."""

    settings: Settings
    db: Database
    store: SqlStore
    blobs: BlobStore
    accounts: AccountService
    mailstore: MailstoreService
    local: LocalDelivery
    resolver: Resolver
    clock: Clock
    queue: QueueStore
    events: EventStore
    dkim: DkimService
    guard: AuthGuard
    sending: SendingService
    bounces: BounceService
    queue_admin: QueueService
    notifier: PollingNotifier
    folders: FolderService
    messages: MessageService
    indexer: SearchIndexer
    reputation_store: ReputationStore
    alerts: AlertService
    pauses: Pauses
    tenants: TenantGuard
    audits: AuditService


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
    accounts = AccountService(store, clock, settings.inbound.default_quota)
    folder_store = FolderStore(db)
    notifier = PollingNotifier(folder_store.highest_modseqs, settings.imap.notify_interval)
    index_store = SearchIndexStore(db)
    indexer = SearchIndexer(index_store, blobs, settings.imap.search_body_max)

    def filed(delivered: list[Delivered], blob: str) -> None:
        notifier.publish(d.mailbox_id for d in delivered)
        indexer.schedule([blob])

    local = LocalDelivery(store, blobs, clock, on_filed=filed)
    messages = MessageService(
        MessageStore(db), folder_store, index_store, indexer, blobs, notifier, clock
    )
    queue = QueueStore(db, blobs)
    events = EventStore(db)
    dkim = DkimService(store, DkimKeyStore(db), clock, settings.dkim.rotation_grace)
    sending = SendingService(settings, accounts, local, blobs, queue, dkim, clock)
    rep_store = ReputationStore(db)
    alerts = AlertService(rep_store, clock)
    pauses = Pauses(rep_store, clock)
    guardrails = settings.reputation.guardrails
    tenants = TenantGuard(queue, events, pauses, alerts, clock, guardrails)
    return Services(
        settings=settings,
        db=db,
        store=store,
        blobs=blobs,
        accounts=accounts,
        mailstore=MailstoreService(store, blobs),
        local=local,
        resolver=resolver,
        clock=clock,
        queue=queue,
        events=events,
        dkim=dkim,
        guard=AuthGuard(AuthFailureStore(db), clock, settings.submission),
        sending=sending,
        bounces=BounceService(settings, accounts, sending, local, queue, blobs, clock),
        queue_admin=QueueService(queue, events, clock),
        notifier=notifier,
        folders=FolderService(folder_store, notifier, clock),
        messages=messages,
        indexer=indexer,
        reputation_store=rep_store,
        alerts=alerts,
        pauses=pauses,
        tenants=tenants,
        audits=AuditService(settings, accounts, dkim, rep_store, alerts, resolver, clock),
    )


def build_engine(s: Services) -> ReputationEngine:
    """The reputation engine of the process that runs the queue."""
    r = s.settings.reputation
    extra_rules = Path(r.rules_file) if r.rules_file else None
    return ReputationEngine(
        s.reputation_store,
        s.events,
        s.resolver,
        s.clock,
        r,
        classifier=Classifier.load(extra=extra_rules),
        providers=ProviderMap.load(extra=r.providers),
        limits=LimitsTable.load(overrides=r.limits),
        schedules=load_schedules(custom=r.warmup.custom),
        alerts=s.alerts,
        pauses=s.pauses,
        source_ips=s.settings.delivery.sending_ips,
    )


@dataclass
class App:
    settings: Settings
    clock: Clock | None = None
    resolver: Resolver | None = None
    services: Services | None = None
    sockets: dict[str, socket.socket] | None = None  # pre-bound by the supervisor
    run_queue: bool = True  # one process per node runs the outbound queue
    runner: QueueRunner | None = None
    engine: ReputationEngine | None = None
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _gates: list[ConnectionGate] = field(default_factory=list)

    async def start(self) -> None:
        self.services = await build_services(
            self.settings, clock=self.clock, resolver=self.resolver
        )
        await load_psl()  # the public suffix list, loaded once in a thread before mail arrives
        tls = tls_context(self.settings)
        sockets = self.sockets if self.sockets is not None else bind_listeners(self.settings)
        for name, sock in sockets.items():
            listener = self.settings.listeners[name]
            if listener.protocol == "imap":
                server = await self._start_imap(listener, sock, tls)
            else:
                server = await self._start_smtp(listener, sock, tls)
            self.bound[name] = sock_address(sock)
            self._servers.append(server)
        self.services.audits.bound = dict(self.bound)
        if self.run_queue:
            s = self.services
            s.audits.start()  # one process audits: the one that runs the queue
            self.engine = build_engine(s)
            await self.engine.start()
            self.runner = QueueRunner(
                s.queue,
                s.blobs,
                s.resolver,
                s.bounces,
                s.clock,
                self.settings.delivery,
                helo=self.settings.hostname,
                engine=self.engine,
                max_token_wait=self.settings.reputation.max_token_wait,
                max_hold=self.settings.reputation.max_hold_extension,
            )
            self.engine.on_change.append(self.runner.wake)
            self.engine.on_release.append(lambda: s.queue.retry_now(None, s.clock.now()))
            s.sending.on_enqueued = self.runner.wake
            await self.runner.start()
        log.info(
            "mailwarden started: %s", ", ".join(f"{n}={h}:{p}" for n, (h, p) in self.bound.items())
        )

    async def _start_smtp(
        self, listener: Listener, sock: socket.socket, tls: ssl.SSLContext
    ) -> asyncio.Server:
        assert self.services is not None
        s = self.services
        limits = self.settings.limits
        submission = listener.protocol == "submission"
        handler: InboundHandler | SubmissionHandler
        if submission:
            handler = SubmissionHandler(
                self.settings, s.accounts, s.guard, s.sending, s.clock, s.tenants
            )
        else:
            handler = InboundHandler(
                self.settings, s.accounts, s.local, s.resolver, s.clock, s.bounces
            )
        gate = ConnectionGate(limits.max_connections_per_ip, limits.max_connections)
        self._gates.append(gate)
        session_limits = SessionLimits(
            max_message_size=limits.max_message_size,
            max_header_size=limits.max_header_size,
            bare_newline=self.settings.inbound.bare_newline,
            gate=gate,
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

        def protocol() -> MailwardenSMTP:
            try:
                if submission:
                    implicit = listener.tls == "implicit"
                    return SubmissionSMTP(
                        handler, implicit_tls=implicit, limits=session_limits, loop=loop, **kwargs
                    )
                return MailwardenSMTP(handler, limits=session_limits, loop=loop, **kwargs)
            except Exception:
                # asyncio drops the connection silently when the factory fails; say why.
                log.exception("cannot start an SMTP session")
                raise

        return await loop.create_server(
            protocol, sock=sock, ssl=tls if listener.tls == "implicit" else None
        )

    async def _start_imap(
        self, listener: Listener, sock: socket.socket, tls: ssl.SSLContext
    ) -> asyncio.Server:
        assert self.services is not None
        s = self.services
        gate = ConnectionGate(
            self.settings.imap.max_connections_per_ip, self.settings.limits.max_connections
        )
        self._gates.append(gate)
        implicit = listener.tls == "implicit"
        ctx = ImapContext(
            settings=self.settings.imap,
            appendlimit=self.settings.limits.max_message_size,
            tls=tls if listener.tls == "starttls" else None,
            accounts=s.accounts,
            guard=s.guard,
            folders=s.folders,
            messages=s.messages,
            notifier=s.notifier,
            gate=gate,
            implicit_tls=implicit,
        )

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await ImapSession(ctx, reader, writer).run()

        return await asyncio.start_server(
            session, sock=sock, ssl=tls if implicit else None, limit=2**20
        )

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let messages in DATA finish, close the rest, close the store."""
        for server in self._servers:
            server.close()
        await asyncio.gather(*(gate.shutdown(grace) for gate in self._gates))
        if self.runner is not None:
            await self.runner.stop(grace)
            self.runner = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        self._servers.clear()
        self._gates.clear()
        if self.services is not None:
            await self.services.audits.stop()
            await self.services.notifier.close()
            await self.services.indexer.close()
            await self.services.db.close()
        log.info("mailwarden stopped")


def tls_context(settings: Settings) -> ssl.SSLContext:
    cert, key = settings.tls.cert, settings.tls.key
    assert cert is not None and key is not None
    if not cert.exists() or not key.exists():
        log.warning("no TLS certificate at %s; generating a self-signed one", cert)
        generate_self_signed(settings.hostname, cert, key)
    return server_context(cert, key)


def bind_listeners(settings: Settings) -> dict[str, socket.socket]:
    """Listening sockets for every enabled listener we can serve (shared by all workers)."""
    out: dict[str, socket.socket] = {}
    for name, listener in settings.listeners.items():
        if not listener.enabled:
            continue
        if listener.protocol not in IMPLEMENTED_PROTOCOLS:
            log.warning(
                "listener %s: protocol %s is not available yet; not started",
                name,
                listener.protocol,
            )
            continue
        out[name] = _bind(listener)
    return out


def _bind(listener: Listener) -> socket.socket:
    sock = _listen(listener)
    # Replies go out as soon as they are written (no Nagle delay behind an unacknowledged
    # segment). asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP, which
    # create_server does not use; on Linux accepted connections inherit it from here.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _listen(listener: Listener) -> socket.socket:
    if listener.address == "*":  # every address, IPv6 and IPv4 on one socket where possible
        if socket.has_dualstack_ipv6():
            return socket.create_server(
                ("", listener.port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=1024
            )
        return socket.create_server(("", listener.port), backlog=1024)
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    return socket.create_server((listener.address, listener.port), family=family, backlog=1024)


def sock_address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


def ready_line(bound: dict[str, tuple[str, int]]) -> str:
    """What `mailwarden run` prints once every listener accepts (tests and scripts wait on it)."""
    return "READY " + " ".join(f"{name}={host}:{port}" for name, (host, port) in bound.items())


async def run_forever(
    settings: Settings,
    sockets: dict[str, socket.socket] | None = None,
    announce: bool = True,
    run_queue: bool = True,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly (one worker's life)."""
    app = App(settings, sockets=sockets, run_queue=run_queue)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        print(ready_line(app.bound), flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop()
