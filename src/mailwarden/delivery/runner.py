"""The queue runner: claims due recipients and delivers them, per destination, concurrently.

* Recipients are claimed in batches (``claimed_by`` = this runner), grouped per message
  and destination into transactions of up to ``max_rcpts_per_transaction`` RCPTs.
* Each destination (recipient domain, or a configured transport) has up to
  ``per_destination`` sessions; an idle session is kept ``reuse_idle`` seconds for the
  next message (connection reuse); all destinations share ``concurrency`` sessions.
* Every attempt's outcome is committed with its delivery events before the next step; a
  bounce's DSN is queued *before* the outcome is recorded, so a crash in between repeats
  work rather than losing a DSN. A runner that starts releases all claims: whatever was
  being delivered when the previous process died is retried (at-least-once).

One runner runs per node (worker 0 of `mailwarden run`); other workers only enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailwarden.config.schema import DeliverySettings
from mailwarden.core.clock import Clock
from mailwarden.core.events import DeliveryEvent
from mailwarden.delivery.client import ConnectFailure, OutboundConnection, connect
from mailwarden.delivery.mx import RouteFailure, resolve_hops, resolve_transport
from mailwarden.delivery.outcome import Bounced, Path, Reply, attempt_outcomes
from mailwarden.delivery.transports import Transport, parse_table, transport_for
from mailwarden.dns.resolver import Resolver
from mailwarden.reputation.engine import ANY_IP, Lane, ReputationEngine
from mailwarden.services.bounces import BounceService
from mailwarden.store.blobs import BlobStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.records import QueuedMessage, QueuedRecipient, RecipientUpdate

log = logging.getLogger("mailwarden.delivery")
MAX_IN_FLIGHT = 2000  # claimed recipients held in memory at once
CLAIM_WINDOW = 0.02  # seconds to gather new mail before claiming it


@dataclass
class Job:
    message: QueuedMessage
    rcpts: list[QueuedRecipient]
    lane: Lane | None = None


@dataclass
class Destination:
    key: str
    domain: str
    transport: Transport | None
    provider: str = ""
    jobs: deque[Job] = field(default_factory=deque)
    sessions: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class QueueRunner:
    def __init__(
        self,
        queue: QueueStore,
        blobs: BlobStore,
        resolver: Resolver,
        bounces: BounceService,
        clock: Clock,
        settings: DeliverySettings,
        helo: str,
        engine: ReputationEngine | None = None,
        max_token_wait: float = 5.0,
        max_hold: float = 0.0,
    ) -> None:
        self.queue = queue
        self.blobs = blobs
        self.resolver = resolver
        self.bounces = bounces
        self.clock = clock
        self.s = settings
        self.engine = engine
        self.max_token_wait = max_token_wait
        self.max_hold = max_hold
        self._held_reason: dict[str, str] = {}
        self.helo = settings.helo_name or helo
        self.self_names = {helo.lower(), self.helo.lower()}  # RFC 5321 §5.1 loop check
        self.transports = parse_table(settings.transports)
        self.id = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._sessions = asyncio.Semaphore(settings.concurrency)
        self._dests: dict[str, Destination] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.in_flight = 0

    async def start(self) -> None:
        released = await self.queue.release_claims()
        if released:
            log.warning("released %d interrupted deliveries; they will be retried", released)
        self._loop_task = asyncio.create_task(self._claim_loop(), name="queue-runner")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give sessions ``grace`` seconds, then cut them (claims are
        released at the next start, so cut deliveries are retried)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for dest in self._dests.values():
            dest.jobs.clear()
            dest.arrived.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- claiming ------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while True:
            claimed = 0
            room = MAX_IN_FLIGHT - self.in_flight
            if room > 0:
                try:
                    claimed = await self._claim(room)
                except Exception:
                    log.exception("queue runner: claiming failed; retrying shortly")
            if claimed and claimed >= room // 2:
                continue  # more may be due right now
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.s.poll_interval)
            except TimeoutError:
                continue
            # Woken by new mail: let a few more arrive, so one claim takes them together
            # instead of one claim (four statements) per message.
            await asyncio.sleep(CLAIM_WINDOW)

    async def _claim(self, room: int) -> int:
        messages = await self.queue.claim_due(self.id, self.clock.now(), room)
        n = 0
        for msg in messages:
            for job in self._jobs(msg):
                self._dispatch(job)
                n += len(job.rcpts)
        self.in_flight += n
        return n

    def _jobs(self, msg: QueuedMessage) -> list[Job]:
        by_dest: dict[str, list[QueuedRecipient]] = {}
        for r in msg.recipients:
            by_dest.setdefault(r.domain, []).append(r)
        size = self.s.max_rcpts_per_transaction
        return [
            Job(msg, rcpts[i : i + size])
            for rcpts in by_dest.values()
            for i in range(0, len(rcpts), size)
        ]

    def _dispatch(self, job: Job) -> None:
        domain = job.rcpts[0].domain
        transport = transport_for(domain, self.transports)
        key = f"{domain}|{transport.display if transport else 'mx'}"
        dest = self._dests.get(key)
        if dest is None:
            dest = self._dests[key] = Destination(key, domain, transport)
        dest.jobs.append(job)
        dest.arrived.set()
        if dest.sessions < self.s.per_destination and dest.sessions < len(dest.jobs):
            dest.sessions += 1
            task = asyncio.create_task(self._session(dest), name=f"deliver {key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- delivering ----------------------------------------------------------------------
    async def _session(self, dest: Destination) -> None:
        conn: OutboundConnection | None = None
        try:
            if self.engine is None:
                async with self._sessions:
                    conn = await self._deliver_jobs(dest, 0)
                return
            relay = dest.transport.host if dest.transport else ""
            dest.provider = await self.engine.provider_for(dest.domain, relay)
            # One connection slot of the provider (its `connections` limit) before a
            # session slot, so a provider at its limit does not hold the shared ones.
            async with self.engine.slot(dest.provider) as per_connection, self._sessions:
                conn = await self._deliver_jobs(dest, per_connection)
        except Exception:
            log.exception("delivery session for %s failed", dest.key)
        finally:
            dest.sessions -= 1
            if dest.sessions == 0 and not dest.jobs:
                self._dests.pop(dest.key, None)
            if conn is not None:
                await conn.close()

    async def _deliver_jobs(
        self, dest: Destination, per_connection: int
    ) -> OutboundConnection | None:
        """Deliver ``dest``'s jobs on one connection (reopened after ``per_connection``
        transactions, 0 = no limit) until none is left for ``reuse_idle`` seconds."""
        conn: OutboundConnection | None = None
        used = 0
        try:
            while True:
                if not dest.jobs:
                    if conn is None or not await _wait(dest, self.s.reuse_idle):
                        return conn
                    continue
                job = dest.jobs.popleft()
                if self.engine is not None and not await self._admit(dest, job):
                    continue
                if conn is not None and per_connection and used >= per_connection:
                    await conn.close()  # the provider's messages-per-connection limit
                    conn, used = None, 0
                conn = await self._attempt(dest, job, conn)
                used += 1
        except BaseException:
            if conn is not None:
                await conn.close()
            raise

    async def _admit(self, dest: Destination, job: Job) -> bool:
        """Ask the job's lane; wait for a rate token (up to max_token_wait) or put the
        job back in the queue until the lane allows it. True: send now."""
        assert self.engine is not None
        msg = job.message
        while True:
            lane, permit = self.engine.choose(
                msg.sender_domain, dest.provider, len(job.rcpts), msg.account
            )
            job.lane = lane
            if permit.ok:
                self._held_reason.pop(lane.key, None)
                return True
            if 0 < permit.wait <= self.max_token_wait:
                await asyncio.sleep(permit.wait)
                continue
            # The lane says "not now": this job and every other waiting job of the same
            # lane go back to the queue together. Rate holds are spread out at the lane's
            # rate, so they do not all come back at the same moment.
            same = [j for j in dest.jobs if self._same_lane(j, job)]
            for j in same:
                dest.jobs.remove(j)
            spacing = 3600.0 / lane.rate.rate if permit.wait > 0 and lane.rate.rate > 0 else 0.0
            await self._postpone([job, *same], permit.hold_until, spacing, permit.reason, lane.key)
            return False

    @staticmethod
    def _same_lane(a: Job, b: Job) -> bool:
        return (
            a.message.sender_domain == b.message.sender_domain
            and a.message.account == b.message.account
        )

    async def _postpone(
        self, jobs: list[Job], until_ts: float, spacing: float, reason: str, lane: str
    ) -> None:
        now = self.clock.now()
        start = max(datetime.fromtimestamp(until_ts, UTC), now + timedelta(seconds=1))
        n = sum(len(j.rcpts) for j in jobs)
        groups = []
        offset = 0.0
        for j in jobs:
            until = start + timedelta(seconds=offset)
            groups.append(([r.id for r in j.rcpts], until, int((until - now).total_seconds())))
            offset += spacing * len(j.rcpts)
        try:
            await self.queue.postpone(groups)
        finally:
            self.in_flight -= n
        if self._held_reason.get(lane) != reason:
            self._held_reason[lane] = reason
            log.info("lane %s holds %d recipients from %s: %s", lane, n, start.isoformat(), reason)

    async def _attempt(
        self, dest: Destination, job: Job, conn: OutboundConnection | None
    ) -> OutboundConnection | None:
        started = asyncio.get_running_loop().time()
        data = await self._body(job.message)
        path = Path(route=dest.transport.display if dest.transport else "mx")
        source = self._source(job)
        if conn is not None and source and conn.facts.source_ip != source:
            await conn.close()  # the job's lane sends from another of our IPs
            conn = None
        reused = conn is not None and conn.usable
        if conn is None or not conn.usable:
            conn = await self._reconnect(dest, job, conn, path, started, data)
            if conn is None:
                return None
        rcpts = [r.rcpt for r in job.rcpts]
        result = await conn.send(job.message.return_path, rcpts, data)
        if reused and not conn.usable and not conn.mail_answered:
            # The cached connection had been closed by the server while idle; that is not
            # this message's failure: open a fresh one and try once more (as Postfix does).
            conn = await self._reconnect(dest, job, conn, path, started, data)
            if conn is None:
                return None
            result = await conn.send(job.message.return_path, rcpts, data)
        facts = conn.facts
        path = Path(
            path.route, facts.mx_host, facts.mx_ip, facts.source_ip, facts.tls, facts.tls_version
        )
        replies = {k: Reply(v.code, v.enhanced, v.text) for k, v in result.replies.items()}
        await self._finish(job, replies, path, started, data, dest.provider)
        return conn

    async def _reconnect(
        self,
        dest: Destination,
        job: Job,
        old: OutboundConnection | None,
        path: Path,
        started: float,
        data: bytes,
    ) -> OutboundConnection | None:
        """Close ``old`` and open a new session; None (and ``job`` failed) if none opens."""
        if old is not None:
            await old.close()
        try:
            return await self._connect(dest, self._source(job))
        except (RouteFailure, ConnectFailure) as exc:
            reply = _failure_reply(exc)
            await self._finish(
                job, {r.rcpt: reply for r in job.rcpts}, path, started, data, dest.provider
            )
            self._fail_waiting(dest, reply, path)
            return None

    def _source(self, job: Job) -> str:
        """The local IP to send ``job`` from: its lane's, else delivery.source_address."""
        if job.lane is not None and job.lane.ip != ANY_IP:
            return job.lane.ip
        return self.s.source_address

    async def _connect(self, dest: Destination, source: str) -> OutboundConnection:
        t = dest.transport
        if t is not None:
            hops = await resolve_transport(self.resolver, t)
        else:
            hops = await resolve_hops(
                self.resolver, dest.domain, self.s.mx_port, self_names=self.self_names
            )
        return await connect(
            hops,
            helo=self.helo,
            source_address=source,
            tls=t.tls if t else "opportunistic",
            username=t.username if t else "",
            password=t.password if t else "",
            connect_timeout=self.s.connect_timeout,
            command_timeout=self.s.command_timeout,
        )

    def _fail_waiting(self, dest: Destination, reply: Reply, path: Path) -> None:
        """The destination is unreachable now: everything queued for it fails the same way
        (as Postfix does within one scheduling round) instead of reconnecting per message."""
        while dest.jobs:
            job = dest.jobs.popleft()
            task = asyncio.create_task(self._finish_other(job, reply, path, dest.provider))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish_other(self, job: Job, reply: Reply, path: Path, provider: str) -> None:
        started = asyncio.get_running_loop().time()
        await self._finish(job, {r.rcpt: reply for r in job.rcpts}, path, started, None, provider)

    async def _finish(
        self,
        job: Job,
        replies: dict[str, Reply],
        path: Path,
        started: float,
        data: bytes | None = None,
        provider: str = "",
    ) -> None:
        """Record one attempt's outcomes (and queue the DSN for bounces). ``data`` is the
        message if the caller has it; it is only read when a DSN needs it."""
        latency = int((asyncio.get_running_loop().time() - started) * 1000)
        out = attempt_outcomes(
            job.message,
            job.rcpts,
            replies,
            path,
            latency_ms=latency,
            now=self.clock.now(),
            settings=self.s,
            max_hold=self.max_hold,
        )
        events = out.events
        if self.engine is not None and provider:
            events = self.engine.classify(events, provider)
        try:
            if out.bounced:
                await self._send_dsn(job, data, out.bounced)
            await self._record(out.updates, events)
        finally:
            self.in_flight -= len(job.rcpts)
        if self.engine is not None and provider:
            lane = job.lane or self.engine.lane(job.message.sender_domain, provider)
            self.engine.observe(lane, events)
        for e in events:
            log.info(
                "%s to=<%s> %s via %s[%s] tls=%s reply=%s %s %s class=%s",
                e.queue_id,
                e.recipient,
                e.outcome.value,
                e.mx_host or e.route,
                e.mx_ip,
                e.tls_version or "no",
                e.code if e.code is not None else "-",
                e.enhanced,
                e.text[:200],
                e.reply_class or "-",
            )
        if any(u.state == "deferred" for u in out.updates):
            self.wake()  # a short retry_initial (tests) must not wait for the poll

    async def _body(self, msg: QueuedMessage) -> bytes:
        return msg.body if msg.body is not None else await self.blobs.get(msg.blob)

    async def _send_dsn(self, job: Job, data: bytes | None, bounced: list[Bounced]) -> None:
        try:
            original = data if data is not None else await self._body(job.message)
            await self.bounces.send_dsn(job.message, original, bounced)
        except Exception:
            # e.g. the sender's own mailbox is full: the outcome must still be recorded,
            # or the recipient would stay claimed; the failure is in the log.
            log.exception(
                "%s: could not send the DSN to <%s>", job.message.queue_id, job.message.mail_from
            )

    async def _record(self, updates: list[RecipientUpdate], events: list[DeliveryEvent]) -> None:
        for delay in (0.5, 2.0, 5.0, None):
            try:
                await self.queue.record(updates, events)
                return
            except Exception:
                if delay is None:
                    raise  # claims stay until the next start, which retries them
                log.exception("recording delivery outcomes failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)


async def _wait(dest: Destination, seconds: float) -> bool:
    dest.arrived.clear()
    try:
        await asyncio.wait_for(dest.arrived.wait(), seconds)
    except TimeoutError:
        return False
    return bool(dest.jobs)


def _failure_reply(exc: RouteFailure | ConnectFailure) -> Reply:
    if isinstance(exc, RouteFailure):
        return Reply(None, exc.enhanced, exc.text)
    r = exc.reply
    return Reply(r.code, r.enhanced, r.text, skipped=r.code is not None and r.code >= 500)
