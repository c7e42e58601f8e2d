"""The reputation engine: events in, lane decisions out (the stateful shell around policy/).

* A **lane** is (sending domain × sending IP × provider). It has an AIMD rate with a token
  bucket, a circuit breaker and, while new, a warm-up state. Identities (``domain:``,
  ``ip:``) have breakers of their own, which hold every lane they are part of.
* The queue runner asks :meth:`ReputationEngine.permit` before each transaction and
  reports outcomes with :meth:`observe`; connections per (IP × provider) are limited by
  :meth:`slot`.
* Pauses (operator overrides, guardrail trips) are rows in the store that any process may
  write (the CLI, a submission worker); the engine re-reads them every ``tick``. Lane and
  breaker states are the engine's: kept in memory, saved every tick and at stop.
* Windows (rolling counts) are rebuilt from the stored delivery events at start.

Every automatic action goes to the remediation log with its inputs; breaker trips and
guardrail pauses also raise alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailwarden.config.schema import ReputationSettings
from mailwarden.core.clock import Clock
from mailwarden.core.events import DeliveryEvent
from mailwarden.dns.resolver import Resolver, mx_hosts
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.classify import Classifier
from mailwarden.reputation.overrides import aimd_settings, breaker_settings
from mailwarden.reputation.pauses import PAUSE_RECHECK, Pauses
from mailwarden.reputation.policy import aimd, breaker, connections, tokens, warmup
from mailwarden.reputation.policy.actions import Action
from mailwarden.reputation.policy.limits import LimitsTable, ProviderLimits
from mailwarden.reputation.providers import ProviderMap
from mailwarden.reputation.score import Score, compute_score
from mailwarden.reputation.windows import Windows, event_counters
from mailwarden.store.events_sql import EventStore
from mailwarden.store.reputation_sql import ActionRecord, ReputationStore, ScoreRecord

log = logging.getLogger("mailwarden.reputation")

PROVIDER_TTL = 3600.0  # seconds a domain → provider answer is kept
PROBE_WAIT = 60.0  # half-open with all probes out: look again after this
BAD_CLASSES = frozenset(
    {"reputation_block", "mailbox_unknown", "domain_unknown", "mailbox_disabled", "complaint"}
)
ANY_IP = "*"
FEEDBACK = ("async_bounce", "complaint")
SCORE_HISTORY_DAYS = 90


# A smarthost's lane, unless reputation.limits.relay is set: no rate or connection limit of
# ours (delivery.per_destination still applies).
RELAY_LIMITS = ProviderLimits(1e9, 1_000_000, 1_000_000_000, 1.0, 1e9)


def named(provider: str) -> bool:
    """A provider from the provider map (gmail, microsoft, ...), as opposed to a domain
    with its own MX (named by that domain), a smarthost or an unresolvable domain. Warm-up
    caps apply to named providers: they are the ones that keep per-IP and per-domain
    reputation for senders they have not seen."""
    return "." not in provider and ":" not in provider and provider != "unknown"


def lane_key(domain: str, ip: str, provider: str) -> str:
    return f"{domain}|{ip or ANY_IP}|{provider}"


@dataclass(frozen=True, slots=True)
class Permit:
    """``ok``: send now. Else ``wait`` (seconds; a rate limit, try again soon) or
    ``hold_until`` (epoch seconds; put the mail back in the queue until then)."""

    ok: bool
    wait: float = 0.0
    hold_until: float = 0.0
    reason: str = ""
    cause: str = ""  # pause | breaker | retry_after | rate | warmup | probe


@dataclass
class Lane:
    key: str
    domain: str
    ip: str
    provider: str
    limits: ProviderLimits
    rate: aimd.RateState
    bucket: tokens.Bucket
    breaker: breaker.BreakerState = field(default_factory=breaker.BreakerState)
    warmup: warmup.WarmupState | None = None  # None: warmed up (or warm-up is off)

    @property
    def target(self) -> str:
        """Its name in the windows, the remediation log, pauses and alerts."""
        return f"lane:{self.key}"

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ip": self.ip,
            "provider": self.provider,
            "rate": dataclasses.asdict(self.rate),
            "breaker": dataclasses.asdict(self.breaker),
            "warmup": dataclasses.asdict(self.warmup) if self.warmup is not None else None,
        }


@dataclass
class Identity:
    key: str  # domain:example.com | ip:192.0.2.1
    breaker: breaker.BreakerState = field(default_factory=breaker.BreakerState)

    @property
    def target(self) -> str:
        return self.key

    def to_json(self) -> dict[str, Any]:
        return {"breaker": dataclasses.asdict(self.breaker)}


def _breaker_from(d: Mapping[str, Any] | None) -> breaker.BreakerState:
    if not d:
        return breaker.BreakerState()
    d = dict(d)
    d["phase"] = breaker.Phase(d.get("phase", "closed"))
    st: breaker.BreakerState = _known(breaker.BreakerState, d)
    return st


def _known(cls: Any, d: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


class _Slots:
    """Counting slots per key with a limit given at each acquire (the limit can change)."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, key: str, limit: int) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used.get(key, 0) < max(1, limit))
            self.used[key] = self.used.get(key, 0) + 1
        try:
            yield
        finally:
            async with self._cond:
                self.used[key] -= 1
                if not self.used[key]:
                    del self.used[key]
                self._cond.notify_all()


class ReputationEngine:
    def __init__(
        self,
        store: ReputationStore,
        events: EventStore,
        resolver: Resolver,
        clock: Clock,
        settings: ReputationSettings,
        *,
        classifier: Classifier,
        providers: ProviderMap,
        limits: LimitsTable,
        schedules: Mapping[str, warmup.Schedule],
        alerts: AlertService,
        pauses: Pauses,
        source_ips: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.events = events
        self.resolver = resolver
        self.clock = clock
        self.s = settings
        self.classifier = classifier
        self.providers = providers
        self.limits = limits
        self.schedule = schedules[settings.warmup.schedule]
        self.alerts = alerts
        self.pauses = pauses
        self.source_ips = list(source_ips) or [ANY_IP]
        self.source_ip = self.source_ips[0]
        self.presets: dict[str, int] = {}  # warm-up day set for lanes yet to come
        self._known_limits = set(limits.providers())
        self.aimd = aimd_settings(settings.aimd)
        self.breaker = breaker_settings(settings.breaker)
        self.warm = warmup.WarmupSettings(day_seconds=settings.warmup.day_seconds)
        self.windows = Windows()
        self.lanes: dict[str, Lane] = {}
        self.identities: dict[str, Identity] = {}
        self.scores: dict[str, Score] = {}
        self.slots = _Slots()
        self.conns: dict[str, connections.ConnState] = {}  # per provider, not saved
        self._provider_cache: dict[str, tuple[str, float]] = {}
        self._dirty: set[str] = set()
        self._log: list[ActionRecord] = []
        self._alerts: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self._resolved: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False  # a breaker closed since the last tick
        self._pruned = 0.0  # when score history was last pruned
        self._feedback_id = 0  # the last event id seen by rebuild/_new_feedback
        self._last_score = 0.0
        self.on_change: list[Callable[[], None]] = []  # after pauses/breakers change (wake)
        # After an operator lifts a hold (resume, warm-up day): make held mail due now.
        self.on_release: list[Callable[[], Awaitable[Any]]] = []

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        n = await self.load()
        await self.pauses.refresh()
        log.info(
            "reputation: %d lanes, %d identities, %d events of the last 30 days replayed",
            len(self.lanes),
            len(self.identities),
            n,
        )
        self._task = asyncio.create_task(self._ticker(), name="reputation-tick")

    async def load(self) -> int:
        """Saved lane and identity states, and windows replayed from the stored events."""
        for key, (kind, st) in (await self.store.load_states()).items():
            if kind == "lane":
                self.lanes[key] = self._lane_from(key, st)
            elif kind == "identity":
                self.identities[key] = Identity(key, _breaker_from(st.get("breaker")))
        presets = await self.store.rows("preset")
        self.presets = {k.removeprefix("preset:"): int(v["day"]) for k, v in presets.items()}
        return await self.rebuild()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def rebuild(self) -> int:
        """Refill the windows from the stored events of the last 30 days."""
        n = 0
        async for batch in self.events.stream(since=self.clock.now() - timedelta(days=30)):
            for i, e in batch:
                self._count(e, self._class_of(e), e.provider or "unknown")
                self._feedback_id = max(self._feedback_id, i)
            n += len(batch)
        return n

    async def _new_feedback(self) -> None:
        """Feedback events written since the last look, by any process (a returned DSN
        arrives at whichever worker got the connection): into the windows."""
        since = self.clock.now() - timedelta(days=30)
        async for batch in self.events.stream(
            since=since, after=self._feedback_id, outcomes=FEEDBACK
        ):
            for i, e in batch:
                self.feedback(e)
                self._feedback_id = max(self._feedback_id, i)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.s.tick)
            try:
                await self.tick()
            except Exception:
                log.exception("reputation tick failed")

    async def tick(self) -> None:
        """Re-read pauses, evaluate breakers and warm-up days, recompute scores when
        due, save changed state, write the log and alerts."""
        before = set(self.pauses.active)
        await self.pauses.refresh()
        commands = await self._apply_commands()
        await self._new_feedback()
        closed, self._closed = self._closed, False
        if commands or closed or before - set(self.pauses.active):
            for fn in self.on_release:
                await fn()
        now = self._now()
        for ident in list(self.identities.values()):
            self._evaluate(ident, now)
        for lane in list(self.lanes.values()):
            self._evaluate(lane, now)
            if lane.warmup is not None:
                lane.warmup, act = warmup.roll(lane.warmup, self.schedule, now=now, s=self.warm)
                self._act(lane.target, act, lane.key)
        if now - self._last_score >= self.s.score_interval:
            self._last_score = now
            await self._scores(now)
        self.windows.prune(now)
        await self.flush()
        if set(self.pauses.active) != before:
            self._changed()

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        states: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for key in dirty:
            if key in self.lanes:
                states[key] = ("lane", self.lanes[key].to_json())
            elif key in self.identities:
                states[key] = ("identity", self.identities[key].to_json())
        logged, self._log = self._log, []
        raised, self._alerts = self._alerts, []
        resolved, self._resolved = self._resolved, []
        try:
            await self.store.save_states(states, self.clock.now())
            await self.store.add_actions(logged)
        except Exception:
            self._dirty |= dirty
            self._log = logged + self._log
            raise
        for type_, severity, target, message, details in raised:
            await self.alerts.raise_(type_, severity, target, message, details)
        for type_, target in resolved:
            await self.alerts.resolve(type_, target, "auto")

    # -- providers and lanes ------------------------------------------------------------
    async def provider_for(self, domain: str, relay_host: str = "") -> str:
        """Who runs ``domain``'s mail, from its MX hosts (cached an hour). Mail through a
        transport (smarthost) goes to the relay's own lane, ``relay:<host>``."""
        if relay_host:
            return f"relay:{relay_host}"
        now = time.monotonic()
        hit = self._provider_cache.get(domain)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            answer = await self.resolver.query(domain, "MX")
            hosts = [h for _, h in mx_hosts(answer) if h] or [domain]
        except Exception:
            hosts = [domain]  # a DNS failure: the delivery attempt will report it
        provider = self.providers.provider_for(hosts)
        self._provider_cache[domain] = (provider, now + PROVIDER_TTL)
        return provider

    def lane(self, domain: str, provider: str, ip: str = "") -> Lane:
        key = lane_key(domain, ip or self.source_ip, provider)
        lane = self.lanes.get(key)
        if lane is None:
            limits = self._limits(provider)
            now = self._now()
            score = self._score_of(domain, ip or self.source_ip)
            rate = aimd.initial(limits, score, s=self.aimd)
            lane = Lane(
                key,
                domain,
                ip or self.source_ip,
                provider,
                limits,
                rate,
                tokens.full(_burst(rate.rate), now),
                warmup=self._new_warmup(domain, provider, now, ip or self.source_ip),
            )
            self.lanes[key] = lane
            self._dirty.add(key)
            if lane.warmup is not None:
                self._act(
                    lane.target,
                    Action(
                        "warmup_start",
                        f"new lane: warm-up schedule {self.schedule.name} day 1, "
                        f"cap {warmup.cap(lane.warmup, self.schedule)}/day",
                        {"schedule": self.schedule.name},
                    ),
                    key,
                )
        return lane

    def _limits(self, provider: str) -> ProviderLimits:
        """A provider's limits. A smarthost (``relay:HOST``) has limits of its own that we do
        not know: none unless ``reputation.limits.relay`` sets some (AIMD still backs off
        when it throttles)."""
        if provider.startswith("relay:"):
            if "relay" in self._known_limits:
                return self.limits.for_provider("relay")
            return RELAY_LIMITS
        return self.limits.for_provider(provider)

    def _new_warmup(
        self, domain: str, provider: str, now: float, ip: str = ANY_IP
    ) -> warmup.WarmupState | None:
        if not self.s.enabled or not self.s.warmup.enabled or not named(provider):
            return None
        for target in (f"ip:{ip}", f"domain:{domain}", f"provider:{provider}"):
            day = self.presets.get(target)
            if day is not None:  # an operator set the warm-up day of this IP/domain
                if day - 1 >= len(self.schedule.caps):
                    return None
                return warmup.set_day(warmup.WarmupState(), day - 1, now=now)
        # "No sending history": nothing delivered from this domain in the last 30 days.
        history = self.windows.totals(f"domain:{domain}", "30d", now).get("delivered", 0)
        return None if history else warmup.WarmupState()

    def _lane_from(self, key: str, st: Mapping[str, Any]) -> Lane:
        provider = str(st["provider"])
        limits = self._limits(provider)
        w = st.get("warmup")
        rate: aimd.RateState = _known(aimd.RateState, st["rate"])
        return Lane(
            key,
            str(st["domain"]),
            str(st["ip"]),
            provider,
            limits,
            rate,
            tokens.full(_burst(rate.rate), self._now()),
            _breaker_from(st.get("breaker")),
            _known(warmup.WarmupState, w) if w else None,
        )

    def _identity(self, key: str) -> Identity:
        ident = self.identities.get(key)
        if ident is None:
            ident = self.identities[key] = Identity(key)
        return ident

    @contextlib.asynccontextmanager
    async def slot(self, provider: str) -> AsyncIterator[int]:
        """One connection to ``provider`` (from any of our IPs): waits while the provider's
        adaptive connection limit is in use. Yields the messages allowed on it."""
        limits = self._limits(provider)
        if not self.s.enabled:
            yield 0
            return
        limit = self._conn(provider).limit
        async with self.slots.hold(provider, limit):
            yield limits.messages_per_connection

    def _conn(self, provider: str) -> connections.ConnState:
        st = self.conns.get(provider)
        if st is None:
            st = self.conns[provider] = connections.ConnState(self._limits(provider).connections)
        return st

    # -- decisions ------------------------------------------------------------------------
    def choose(self, domain: str, provider: str, n: int, tenant: str = "") -> tuple[Lane, Permit]:
        """The lane to send ``n`` recipients on now, over every sending IP: IPs still warming
        up first (so they warm), and mail over a cold IP's cap (or rate) overflows to the
        next. Without a lane that may send: the first lane and its earliest refusal."""
        lanes = [self.lane(domain, provider, ip) for ip in self.source_ips]
        if len(lanes) > 1:
            lanes.sort(key=lambda x: x.warmup is None)
        refusals: list[tuple[Lane, Permit]] = []
        for lane in lanes:
            p = self.permit(lane, n, tenant)
            if p.ok:
                return lane, p
            if p.cause == "pause" and not p.reason.startswith(("ip:", "lane:")):
                return lane, p  # a pause of the domain, provider or tenant holds everywhere
            refusals.append((lane, p))
        return min(refusals, key=lambda lp: lp[1].hold_until)

    def permit(self, lane: Lane, n: int, tenant: str = "") -> Permit:
        """May ``n`` recipients of ``tenant``'s mail go out on ``lane`` now?"""
        now = self._now()
        paused = self.pauses.find(
            lane.target,
            f"domain:{lane.domain}",
            f"ip:{lane.ip}",
            f"provider:{lane.provider}",
            f"tenant:{tenant or '-'}",
        )
        if paused is not None:
            return Permit(False, hold_until=now + PAUSE_RECHECK, reason=paused, cause="pause")
        if not self.s.enabled:
            return Permit(True)
        for holder in (self.identities.get(f"domain:{lane.domain}"), self._ip_ident(lane), lane):
            if holder is None:
                continue
            b = holder.breaker
            if b.phase == breaker.Phase.OPEN and b.retry_at <= now:  # backoff over
                self._evaluate(holder, now)  # → half-open now
        for ident in (self.identities.get(f"domain:{lane.domain}"), self._ip_ident(lane)):
            if ident is not None and ident.breaker.phase == breaker.Phase.OPEN:
                return Permit(
                    False,
                    hold_until=ident.breaker.retry_at,
                    reason=f"{ident.key} breaker open until {_iso(ident.breaker.retry_at)}",
                    cause="breaker",
                )
        if lane.breaker.phase == breaker.Phase.OPEN:
            return Permit(
                False,
                hold_until=lane.breaker.retry_at,
                reason=f"lane breaker open until {_iso(lane.breaker.retry_at)}",
                cause="breaker",
            )
        if lane.rate.not_before > now:
            return Permit(
                False,
                wait=lane.rate.not_before - now,
                hold_until=lane.rate.not_before,
                reason=f"provider asked to retry after {_iso(lane.rate.not_before)}",
                cause="retry_after",
            )
        rate = lane.rate.rate
        burst = max(float(n), _burst(rate))
        bucket, wait = tokens.take(lane.bucket, rate, burst, now, float(n))
        if wait > 0:
            return Permit(
                False, wait=wait, hold_until=now + wait, reason=f"rate {rate:.0f}/h", cause="rate"
            )
        if lane.warmup is not None:
            lane.warmup, rolled = warmup.roll(lane.warmup, self.schedule, now=now, s=self.warm)
            self._act(lane.target, rolled, lane.key)
            st, ok, why, wwait = warmup.admit(lane.warmup, self.schedule, now=now, n=n, s=self.warm)
            if not ok:
                lane.warmup = st
                self._dirty.add(lane.key)
                return Permit(False, hold_until=now + max(wwait, 1.0), reason=why, cause="warmup")
            lane.warmup = st
        for holder in self._half_open(lane):
            st2, ok, why = breaker.admit(holder.breaker, now=now, s=self.breaker)
            holder.breaker = st2
            self._dirty.add(holder.key)
            if not ok:
                return Permit(False, hold_until=now + PROBE_WAIT, reason=why, cause="probe")
        lane.bucket = bucket
        self._dirty.add(lane.key)
        return Permit(True)

    def _half_open(self, lane: Lane) -> list[Lane | Identity]:
        out: list[Lane | Identity] = [
            x
            for x in (self.identities.get(f"domain:{lane.domain}"), self._ip_ident(lane), lane)
            if x is not None and x.breaker.phase == breaker.Phase.HALF_OPEN
        ]
        return out

    def _ip_ident(self, lane: Lane) -> Identity | None:
        return None if lane.ip == ANY_IP else self.identities.get(f"ip:{lane.ip}")

    # -- outcomes ---------------------------------------------------------------------------
    def classify(self, events: Sequence[DeliveryEvent], provider: str) -> list[DeliveryEvent]:
        """The events with their provider and reply class filled in (before storing)."""
        return [
            dataclasses.replace(e, provider=provider, reply_class=self._class_of(e)) for e in events
        ]

    def _class_of(self, e: DeliveryEvent) -> str:
        if e.reply_class:
            return e.reply_class
        if e.code is not None and 200 <= e.code < 300:
            return "delivered"  # every 2xx to the final dot (texts carry unique queue ids)
        return self.classifier.classify(e.code, e.enhanced, e.text).cls.value

    def observe(self, lane: Lane, events: Sequence[DeliveryEvent]) -> None:
        """Feed one transaction's outcomes (already classified) to the lane's policy."""
        now = self._now()
        bad = False
        for e in events:
            cls = e.reply_class or self._class_of(e)
            self._count(e, cls, lane.provider, lane.key)
            retry_after = None
            if cls == "throttled":
                retry_after = self.classifier.classify(e.code, e.enhanced, e.text).retry_after
            old_rate = lane.rate
            lane.rate, act = aimd.on_result(
                lane.rate,
                cls,
                now=now,
                limits=lane.limits,
                score=self._score_of(lane.domain, lane.ip),
                retry_after=retry_after,
                reply=f"{e.code if e.code is not None else '---'} {e.enhanced}",
                s=self.aimd,
            )
            if act is not None:
                self._act(lane.target, act, lane.key)
                if act.kind == "throttle":
                    # The cut holds from now: the tokens saved at the old rate are gone.
                    lane.bucket = tokens.Bucket(0.0, now)
            if lane.rate != old_rate:
                self._dirty.add(lane.key)
            conn, cact = connections.on_result(
                self._conn(lane.provider),
                cls,
                e.text,
                now=now,
                maximum=lane.limits.connections,
                s=self.aimd,
            )
            self.conns[lane.provider] = conn
            self._act(f"provider:{lane.provider}", cact, lane.key)
            if lane.warmup is not None:
                lane.warmup = warmup.record(lane.warmup, cls, e.outcome.value)
            holders: list[Lane | Identity] = [lane, *self._identities_of(lane)]
            for holder in holders:
                if holder.breaker.phase == breaker.Phase.HALF_OPEN:
                    st, act = breaker.on_result(holder.breaker, cls, now=now, s=self.breaker)
                    holder.breaker = st
                    self._dirty.add(holder.key)
                    self._breaker_act(holder, act, now)
            bad = bad or cls in BAD_CLASSES
        if bad:
            self._evaluate(lane, now)
            for ident in self._identities_of(lane):
                self._evaluate(ident, now)

    def feedback(self, e: DeliveryEvent) -> None:
        """A complaint or asynchronous bounce (reputation/feedback) for mail we sent."""
        self._count(e, self._class_of(e), e.provider or "unknown")

    def _identities_of(self, lane: Lane) -> list[Identity]:
        out = [self._identity(f"domain:{lane.domain}")]
        if lane.ip != ANY_IP:
            out.append(self._identity(f"ip:{lane.ip}"))
        return out

    def _count(self, e: DeliveryEvent, cls: str, provider: str, key: str = "") -> None:
        at = e.at.timestamp()
        counters = event_counters(e.outcome.value, cls, e.outcome.value == "bounced")
        if not key:
            ip = e.source_ip if e.source_ip in self.source_ips else self.source_ip
            key = lane_key(e.sender_domain, ip, provider)
        add = self.windows.add
        add(f"lane:{key}", at, counters)
        add(f"domain:{e.sender_domain}", at, counters)
        add(f"provider:{provider}", at, counters)
        add(f"tenant:{e.account or '-'}", at, counters)
        if e.source_ip:
            add(f"ip:{e.source_ip}", at, counters)

    # -- breakers ---------------------------------------------------------------------------
    def _evaluate(self, holder: Lane | Identity, now: float) -> None:
        wkey = holder.target
        b = holder.breaker
        since = breaker.counting_since(b)
        h1 = self.windows.totals(wkey, "1h", now, since=since)
        h24 = self.windows.totals(wkey, "24h", now, since=since)
        if isinstance(holder, Identity) and h1.get("reputation_block"):
            # One provider's block is that provider's verdict: its lane's breaker handles
            # it. The domain or IP as a whole trips on blocks only when two or more
            # providers block it (hard bounces and complaints count across providers).
            blocking = {
                x.provider
                for x in self._lanes_under(holder)
                if self.windows.totals(x.target, "1h", now, since=since).get("reputation_block", 0)
                >= self.breaker.block_count
            }
            if len(blocking) < 2:
                h1 = {**h1, "reputation_block": 0}
        st, act = breaker.evaluate(b, h1, h24, now=now, s=self.breaker)
        if st != b:
            holder.breaker = st
            self._dirty.add(holder.key)
        self._breaker_act(holder, act, now)

    def _breaker_act(self, holder: Lane | Identity, act: Action | None, now: float) -> None:
        if act is None:
            return
        target = holder.target
        self._act(target, act, holder.key)
        if act.kind == "breaker_open":
            self._alerts.append(
                ("breaker_open", "critical", target, f"{target}: {act.reason}", dict(act.inputs))
            )
            for lane in self._lanes_under(holder):
                if lane.warmup is not None and lane.warmup.day > 0:
                    lane.warmup, back = warmup.step_back(lane.warmup, now=now)
                    self._act(lane.target, back, lane.key)
            self._changed()
        elif act.kind == "breaker_close":
            self._resolved.append(("breaker_open", target))
            self._closed = True
            self._changed()
        elif act.kind == "breaker_half_open":
            self._changed()

    def _lanes_under(self, holder: Lane | Identity) -> list[Lane]:
        if isinstance(holder, Lane):
            return [holder]
        kind, _, value = holder.key.partition(":")
        attr = "domain" if kind == "domain" else "ip"
        return [x for x in self.lanes.values() if getattr(x, attr) == value]

    # -- scores -----------------------------------------------------------------------------
    async def _scores(self, now: float) -> None:
        records = []
        at = self.clock.now()
        for key in self.windows.keys():  # noqa: SIM118 (a method, not a dict)
            if not key.startswith(("domain:", "ip:", "tenant:")):
                continue
            counts = self.windows.totals(key, "7d", now)
            if not counts.get("attempts") and not counts.get("complaint"):
                continue
            score = compute_score(counts)
            old = self.scores.get(key)
            self.scores[key] = score
            records.append(ScoreRecord(at, key, score.value, score.sample, score.contributions))
            low = self.s.score_alert_below
            if score.value < low and (old is None or old.value >= low):
                worst = max(score.contributions.items(), key=lambda kv: kv[1], default=("", 0))
                self._alerts.append(
                    (
                        "score_drop",
                        "warning",
                        key,
                        f"{key}: reputation score {score.value:.0f} is below {low:.0f} "
                        f"(largest cost: {worst[0]} -{worst[1]:.0f})",
                        {"score": round(score.value, 1), **dict(score.contributions)},
                    )
                )
            elif score.value >= low and old is not None and old.value < low:
                self._resolved.append(("score_drop", key))
        await self.store.add_scores(records)
        if now - self._pruned >= 3600:
            self._pruned = now
            await self.store.prune_scores(at - timedelta(days=SCORE_HISTORY_DAYS))

    def _score_of(self, domain: str, ip: str) -> float | None:
        vals = [
            s.value
            for s in (self.scores.get(f"domain:{domain}"), self.scores.get(f"ip:{ip}"))
            if s is not None
        ]
        return min(vals) if vals else None

    def score_now(self, key: str) -> Score:
        return compute_score(self.windows.totals(key, "7d", self._now()))

    # -- operator commands --------------------------------------------------------------------
    async def _apply_commands(self) -> int:
        commands = await self.pauses.take_commands()
        for cmd in commands:
            target, what, actor = cmd["target"], cmd["command"], cmd["actor"]
            now = self._now()
            if what == "resume":
                for holder in self._holders(target):
                    if holder.breaker.phase != breaker.Phase.CLOSED:
                        holder.breaker = breaker.BreakerState(closed_at=now)
                        self._dirty.add(holder.key)
                        self._act(
                            target,
                            Action("breaker_close", f"closed by {actor}", {}),
                            holder.key,
                            actor=actor,
                        )
                        self._resolved.append(("breaker_open", holder.target))
            elif what == "warmup":
                day = int(cmd["day"])
                if target.partition(":")[0] in ("domain", "ip", "provider"):
                    self.presets[target] = day  # also for lanes that do not exist yet
                    preset = {f"preset:{target}": ("preset", {"day": day})}
                    await self.store.save_states(preset, self.clock.now())
                for lane in self._lanes_matching(target):
                    st = lane.warmup or warmup.WarmupState()
                    lane.warmup = warmup.set_day(st, max(0, day - 1), now=now)
                    if day - 1 >= len(self.schedule.caps):
                        lane.warmup = None
                    self._dirty.add(lane.key)
            self._changed()
        return len(commands)

    def _holders(self, target: str) -> list[Lane | Identity]:
        out: list[Lane | Identity] = list(self._lanes_matching(target))
        if target in self.identities:
            out.append(self.identities[target])
        return out

    def _lanes_matching(self, target: str) -> list[Lane]:
        kind, _, value = target.partition(":")
        if kind == "lane":
            return [x for x in self.lanes.values() if x.key == value]
        if kind in ("domain", "ip", "provider"):
            return [x for x in self.lanes.values() if getattr(x, kind) == value]
        return []

    # -- helpers ----------------------------------------------------------------------------
    def _act(self, target: str, act: Action | None, key: str, actor: str = "auto") -> None:
        if act is None:
            return
        self._dirty.add(key)
        self._log.append(
            ActionRecord(self.clock.now(), actor, act.kind, target, act.reason, dict(act.inputs))
        )
        level = logging.WARNING if act.kind in ("breaker_open", "throttle") else logging.INFO
        log.log(level, "reputation %s %s: %s", act.kind, target, act.reason)

    def _changed(self) -> None:
        for fn in self.on_change:
            fn()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def lanes_view(self) -> list[dict[str, Any]]:
        now = self._now()
        return [lane_view(x, self.windows, now, self.schedule) for x in self.lanes.values()]


def lane_view(lane: Lane, windows: Windows, now: float, sched: warmup.Schedule) -> dict[str, Any]:
    h1 = windows.totals(lane.target, "1h", now)
    return {
        "lane": lane.key,
        "provider": lane.provider,
        "rate_per_hour": round(lane.rate.rate, 1),
        "base_per_hour": lane.limits.messages_per_hour,
        "breaker": lane.breaker.phase.value,
        "warmup_day": None if lane.warmup is None else lane.warmup.day + 1,
        "warmup_cap": None if lane.warmup is None else warmup.cap(lane.warmup, sched),
        "sent_today": None if lane.warmup is None else lane.warmup.sent,
        "last_hour": h1,
    }


def _burst(rate_per_hour: float) -> float:
    """Tokens a lane may spend at once: ten seconds' worth of its rate (a minute's worth
    would let a lane that starts above a provider's limit blow through it before the first
    throttling reply comes back), but at least 20, so a person's handful of messages to one
    domain does not wait on a slow lane."""
    return max(rate_per_hour / 360.0, 20.0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
