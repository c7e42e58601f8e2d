#!/usr/bin/env python3
"""Micro-benchmark of the pure reputation policy (no I/O; one process pinned to one core).

Prints:

1. **Decision cost per message** (µs): one message's full policy path, as the delivery lane
   runs it: token-bucket ``take`` + breaker ``admit`` + warm-up ``admit`` + AIMD
   ``on_result`` + breaker ``on_result`` + ``Windows.add`` for 4 keys (tenant, sending
   domain, IP lane, provider) with the counters of ``event_counters``. Replies are mostly
   ``delivered`` with a sprinkling of greylisting, throttling and unknown mailboxes, at
   100 simulated messages a second. Target: < 50 µs. Each step is also timed on its own.
2. **Event ingestion** into ``Windows`` (events/s): each event touches 4 keys (out of
   50 tenants × 20 domains × 4 IPs × 6 providers) with ~4 counters. Target: ≥ 20,000/s.
3. **The engine's own cost per message** (µs): ``ReputationEngine.choose`` (pauses, breakers,
   rate, warm-up of the lane) + ``classify`` + ``observe`` (windows for 5 keys, AIMD, the
   connection limit, warm-up health) for a delivered reply, the way the queue runner calls
   them, on one lane; the store is not touched on this path (state is saved by the tick).
4. **totals() cost** (µs) per span on a key with 30 days of events, one a minute (every
   bucket populated: the worst case), and that key's memory.

    .venv/bin/python bench/reputation_policy.py            # --n 200000 messages / events
    .venv/bin/python bench/reputation_policy.py --n 1000000 --cpu 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable

from mailwarden.reputation.policy import aimd, breaker, tokens, warmup
from mailwarden.reputation.policy.limits import LimitsTable
from mailwarden.reputation.windows import Windows, event_counters

T0 = 1_700_000_000.0
# (outcome, reply class, permanent) cycled per message: 1 % greylisted, 0.5 % unknown
# mailbox, 0.1 % throttled, the rest delivered
MIX: list[tuple[str, str, bool]] = (
    [("delivered", "delivered", False)] * 984
    + [("deferred", "greylisted", False)] * 10
    + [("bounced", "mailbox_unknown", True)] * 5
    + [("deferred", "throttled", False)] * 1
)


def pin(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[0] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen} (of {len(allowed)} allowed)"


def best_of(repeat: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best, median) of ``repeat`` runs of ``fn`` (which returns seconds)."""
    runs = [fn() for _ in range(repeat)]
    return min(runs), statistics.median(runs)


def message_path(n: int) -> float:
    """Seconds for ``n`` messages through the full per-message policy path."""
    lim = LimitsTable.load().for_provider("gmail")
    sched = warmup.Schedule("bench", (10**9,))
    w = Windows()
    bucket = tokens.full(100.0, T0)
    rate = aimd.RateState(10**7, 0, 0.0, 0.0)  # high: the bucket never makes us wait
    brk = breaker.BreakerState()
    wst = warmup.WarmupState()
    keys = ("tenant:acme", "domain:acme.example", "lane:203.0.113.7:gmail", "provider:gmail")
    mix = [(o, c, p, event_counters(o, c, p)) for o, c, p in MIX]
    m = len(mix)
    start = time.perf_counter()
    for i in range(n):
        now = T0 + i * 0.01
        _outcome, cls, _, counters = mix[i % m]
        bucket, _wait = tokens.take(bucket, rate.rate, 100.0, now)
        brk, _ok, _why = breaker.admit(brk, now=now)
        wst, _ok, _why, _w = warmup.admit(wst, sched, now=now)
        rate, _act = aimd.on_result(rate, cls, now=now, limits=lim)
        brk, _act = breaker.on_result(brk, cls, now=now)
        for key in keys:
            w.add(key, now, counters)
    return time.perf_counter() - start


def step_costs(n: int) -> dict[str, float]:
    """µs per call of each step on its own."""
    lim = LimitsTable.load().for_provider("gmail")
    sched = warmup.Schedule("bench", (10**9,))
    out: dict[str, float] = {}

    def timed(name: str, body: Callable[[float], None]) -> None:
        start = time.perf_counter()
        for i in range(n):
            body(T0 + i * 0.01)
        out[name] = (time.perf_counter() - start) / n * 1e6

    b = [tokens.full(100.0, T0)]
    timed("tokens.take", lambda now: b.__setitem__(0, tokens.take(b[0], 1e7, 100.0, now)[0]))
    br = [breaker.BreakerState()]
    timed("breaker.admit", lambda now: br.__setitem__(0, breaker.admit(br[0], now=now)[0]))
    wu = [warmup.WarmupState()]
    timed("warmup.admit", lambda now: wu.__setitem__(0, warmup.admit(wu[0], sched, now=now)[0]))
    r = [aimd.RateState(1e7, 0, 0.0, 0.0)]
    timed(
        "aimd.on_result",
        lambda now: r.__setitem__(0, aimd.on_result(r[0], "delivered", now=now, limits=lim)[0]),
    )
    timed(
        "breaker.on_result",
        lambda now: br.__setitem__(0, breaker.on_result(br[0], "delivered", now=now)[0]),
    )
    w = Windows()
    counters = event_counters("delivered", "delivered", False)
    timed("Windows.add x4", lambda now: [w.add(k, now, counters) for k in ("a", "b", "c", "d")])
    return out


def ingestion(n: int) -> float:
    """Seconds to ingest ``n`` events, 4 keys each, counters from event_counters."""
    tenants = [f"tenant:{i}" for i in range(50)]
    domains = [f"domain:d{i}.example" for i in range(20)]
    ips = [f"ip:203.0.113.{i}" for i in range(4)]
    providers = ["gmail", "microsoft", "yahoo", "apple", "aol", "default"]
    events = []
    for i in range(min(n, 50_000)):  # a pool of distinct events, reused
        o, c, p = MIX[(i * 7) % len(MIX)]
        events.append(
            (
                (
                    tenants[i % 50],
                    domains[(i * 3) % 20],
                    ips[i % 4],
                    f"provider:{providers[i % 6]}",
                ),
                o,
                c,
                p,
            )
        )
    w = Windows()
    m = len(events)
    start = time.perf_counter()
    for i in range(n):
        keys, o, c, p = events[i % m]
        at = T0 + i * 0.05  # 20 events/s of simulated time: n=200k spans ~3 hours
        counters = event_counters(o, c, p)
        for k in keys:
            w.add(k, at, counters)
    return time.perf_counter() - start


def full_key() -> tuple[Windows, float, int]:
    """A key with one 4-counter event a minute for 30 days; (windows, now, bytes)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    w = Windows()
    counters = ("attempts", "delivered", "deferred", "greylisted")
    for minute in range(30 * 1440):
        w.add("k", T0 + minute * 60.0, counters)
        if minute % 60 == 0:
            w.prune(T0 + minute * 60.0)  # as the engine does every few minutes
    w.prune(T0 + 30 * 86400.0)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return w, T0 + 30 * 86400.0, size


def totals_cost(repeat: int) -> dict[str, float]:
    w, now, _ = full_key()
    out = {}
    for span in ("1h", "24h", "7d", "30d"):
        start = time.perf_counter()
        for _ in range(repeat):
            w.totals("k", span, now)
        out[span] = (time.perf_counter() - start) / repeat * 1e6
    return out


async def engine_path(n: int) -> float:
    """µs per message through the real engine (see the module docstring, figure 3)."""
    from datetime import UTC, datetime

    from mailwarden.config.schema import ReputationSettings
    from mailwarden.core.clock import FakeClock
    from mailwarden.core.events import DeliveryEvent, Outcome
    from mailwarden.dns.resolver import StaticResolver
    from mailwarden.reputation.alerts import AlertService
    from mailwarden.reputation.classify import default_classifier
    from mailwarden.reputation.engine import ReputationEngine
    from mailwarden.reputation.pauses import Pauses
    from mailwarden.reputation.policy.warmup import load_schedules
    from mailwarden.reputation.providers import ProviderMap
    from mailwarden.store.db import Database
    from mailwarden.store.events_sql import EventStore
    from mailwarden.store.reputation_sql import ReputationStore

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        store = ReputationStore(db)
        clock = FakeClock(datetime(2026, 12, 1, tzinfo=UTC))
        settings = ReputationSettings.model_validate(
            {"limits": {"gmail": {"messages_per_hour": 1e9, "cap_per_hour": 1e9}}}
        )
        engine = ReputationEngine(
            store,
            EventStore(db),
            StaticResolver(),
            clock,
            settings,
            classifier=default_classifier(),
            providers=ProviderMap.load(),
            limits=LimitsTable.load(overrides=settings.limits),
            schedules=load_schedules(),
            alerts=AlertService(store, clock),
            pauses=Pauses(store, clock),
        )
        engine.lane("example.com", "gmail").warmup = None  # an established lane
        events = [
            DeliveryEvent(
                at=clock.now(),
                outcome=Outcome.DELIVERED,
                queue_id=f"Q{i}",
                message_id=f"{i}@example.com",
                recipient=f"u{i}@gmail.com",
                recipient_domain="gmail.com",
                sender="news@example.com",
                sender_domain="example.com",
                account="app@example.com",
                attempt=1,
                code=250,
                enhanced="2.0.0",
                text=f"2.0.0 OK  1733011200 {i:08x}.42 - gsmtp",
                source_ip="192.0.2.1",
            )
            for i in range(n)
        ]
        start = time.perf_counter()
        for e in events:
            lane, permit = engine.choose("example.com", "gmail", 1, "app@example.com")
            assert permit.ok
            engine.observe(lane, engine.classify([e], "gmail"))
            clock.advance(0.001)
        elapsed = time.perf_counter() - start
        await db.close()
    return elapsed / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=200_000, help="messages / events per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: first)")
    args = ap.parse_args(argv)
    print(f"reputation policy bench: n={args.n}, {args.repeat} runs, {pin(args.cpu)}")
    print(f"python {sys.version.split()[0]}")

    best, med = best_of(args.repeat, lambda: message_path(args.n))
    us, us_med = best / args.n * 1e6, med / args.n * 1e6
    verdict = "OK" if us < 50 else "OVER TARGET"
    print(
        f"\n1. decision path per message: {us:.2f} µs (median {us_med:.2f}); target < 50: {verdict}"
    )
    for name, cost in step_costs(args.n).items():
        print(f"   {name:<18} {cost:6.2f} µs")

    best, med = best_of(args.repeat, lambda: ingestion(args.n))
    rate, rate_med = args.n / best, args.n / med
    verdict = "OK" if rate >= 20_000 else "UNDER TARGET"
    print(
        f"\n2. ingestion: {rate:,.0f} events/s (median {rate_med:,.0f}), 4 keys x ~4 counters;"
        f" target >= 20,000: {verdict}"
    )

    engine_us = asyncio.run(engine_path(min(args.n, 50_000)))
    verdict = "OK" if engine_us < 50 else "OVER TARGET"
    print(f"\n3. engine choose + classify + observe: {engine_us:.1f} µs per message: {verdict}")

    _, _, size = full_key()
    print(
        f"\n4. totals() on a key with 30 days of events (60 + 720 buckets, {size / 1024:.0f} KiB):"
    )
    for span, cost in totals_cost(max(200, args.n // 1000)).items():
        print(f"   {span:<4} {cost:8.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
