"""The reputation engine with a real store and an injected clock: weeks of simulated time
in a few seconds, without a network. (The end-to-end tests with a running server and the
provider simulator are in test_reputation.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwarden.config.schema import ReputationSettings
from mailwarden.core.clock import FakeClock
from mailwarden.core.events import DeliveryEvent, Outcome
from mailwarden.dns.resolver import StaticResolver
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.classify import default_classifier
from mailwarden.reputation.engine import Lane, ReputationEngine
from mailwarden.reputation.pauses import Pauses
from mailwarden.reputation.policy.limits import LimitsTable
from mailwarden.reputation.policy.warmup import load_schedules
from mailwarden.reputation.providers import ProviderMap
from mailwarden.store.blobs import BlobStore
from mailwarden.store.db import Database
from mailwarden.store.events_sql import EventStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.reputation_sql import ReputationStore

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DAY = 86_400.0
BLOCK = (550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus")
OK = (250, "2.0.0", "OK queued as 1234")


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = FakeClock(T0)
        self.resolver = StaticResolver(
            {
                ("gmail.com", "MX"): ["5 gmail-smtp-in.l.google.com."],
                ("yahoo.com", "MX"): ["1 mta5.am0.yahoodns.net."],
                ("example.net", "MX"): ["10 mx.example.net."],
            }
        )

    async def open(self, **settings: object) -> ReputationEngine:
        self.db = Database(f"sqlite:///{self.tmp / 'rep.db'}")
        await self.db.migrate()
        self.queue = QueueStore(self.db, BlobStore(self.tmp / "blobs"))
        self.events = EventStore(self.db)
        store = ReputationStore(self.db)
        s = ReputationSettings.model_validate(settings)
        self.engine = ReputationEngine(
            store,
            self.events,
            self.resolver,
            self.clock,
            s,
            classifier=default_classifier(),
            providers=ProviderMap.load(),
            limits=LimitsTable.load(overrides=s.limits),
            schedules=load_schedules(custom=s.warmup.custom),
            alerts=AlertService(store, self.clock),
            pauses=Pauses(store, self.clock),
        )
        await self.engine.load()
        await self.engine.pauses.refresh()
        return self.engine

    async def close(self) -> None:
        await self.engine.flush()
        await self.db.close()

    async def send(self, lane: Lane, reply: tuple[int, str, str], n: int = 1) -> int:
        """Ask the lane for ``n`` single-recipient messages and record ``reply`` for each
        one it lets out (stored, like the runner does); returns how many went out."""
        sent = 0
        for i in range(n):
            permit = self.engine.permit(lane, 1, "alice@example.test")
            while permit.cause == "rate":  # time passes while the lane waits for a token
                self.clock.advance(max(permit.wait, 0.01))
                permit = self.engine.permit(lane, 1, "alice@example.test")
            if not permit.ok:
                continue
            code, enhanced, text = reply
            e = DeliveryEvent(
                at=self.clock.now(),
                outcome=Outcome.DELIVERED if code < 300 else Outcome.BOUNCED,
                queue_id=f"Q{i}",
                message_id=f"m{i}@example.test",
                recipient=f"u{i}@{lane.provider}.test",
                recipient_domain=f"{lane.provider}.test",
                sender="alice@example.test",
                sender_domain=lane.domain,
                account="alice@example.test",
                attempt=1,
                code=code,
                enhanced=enhanced,
                text=text,
                source_ip="192.0.2.1",
            )
            [e] = self.engine.classify([e], lane.provider)
            await self.queue.record([], [e])
            self.engine.observe(lane, [e])
            sent += 1
        return sent


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    yield r
    await r.close()


async def test_providers_come_from_mx_hosts(rig: Rig) -> None:
    engine = await rig.open()
    assert await engine.provider_for("gmail.com") == "gmail"
    assert await engine.provider_for("yahoo.com") == "yahoo"
    assert await engine.provider_for("example.net") == "example.net"  # its own MX
    assert await engine.provider_for("x.test", "relay.example.org") == "relay:relay.example.org"


async def test_warmup_days_in_simulated_time_survive_restarts(rig: Rig) -> None:
    fast = {"gmail": {"messages_per_hour": 1e7, "cap_per_hour": 1e7}}  # rate is not the point
    cfg = {"limits": fast, "warmup": {"schedule": "t", "custom": {"t": [5, 10, 20, 40]}}}
    engine = await rig.open(**cfg)
    lane = engine.lane("example.test", "gmail")
    sent_per_day = []
    for day in range(7):
        await engine.tick()
        sent_per_day.append(await rig.send(lane, OK, 50))
        rig.clock.advance(DAY)
        if day in (1, 3):  # the server restarts now and then: the schedule goes on
            await rig.close()
            engine = await rig.open(**cfg)
            lane = engine.lane("example.test", "gmail")
    # Each day sends its cap, then the 50 offered once the schedule is over.
    assert sent_per_day == [5, 10, 20, 40, 50, 50, 50]
    assert lane.warmup is None or lane.warmup.day >= 4
    kinds = [a.kind for a in await engine.store.actions(limit=100)]
    assert kinds.count("warmup_step") == 4 and "warmup_start" in kinds


async def test_a_bad_day_holds_the_schedule_and_a_trip_steps_it_back(rig: Rig) -> None:
    fast = {"gmail": {"messages_per_hour": 1e7, "cap_per_hour": 1e7}}
    cfg = {"limits": fast, "warmup": {"schedule": "t", "custom": {"t": [20, 40, 80]}}}
    engine = await rig.open(**cfg)
    lane = engine.lane("example.test", "gmail")
    await rig.send(lane, OK, 20)
    rig.clock.advance(DAY)
    await engine.tick()
    assert lane.warmup is not None and lane.warmup.day == 1
    unknown = (550, "5.1.1", "The email account that you tried to reach does not exist")
    await rig.send(lane, unknown, 10)  # half the day's mail bounces
    await rig.send(lane, OK, 30)
    rig.clock.advance(DAY)
    await engine.tick()
    assert lane.warmup is not None and lane.warmup.day == 1  # held on day 2
    await rig.send(lane, BLOCK, 3)  # three blocks: the breaker trips ...
    assert lane.breaker.phase.value == "open"
    assert lane.warmup is not None and lane.warmup.day == 0  # ... and warm-up steps back
    kinds = [a.kind for a in await engine.store.actions(limit=100)] if await _flush(engine) else []
    assert {"warmup_hold", "warmup_back", "breaker_open"} <= set(kinds)


async def _flush(engine: ReputationEngine) -> bool:
    await engine.flush()
    return True


async def test_one_providers_blocks_pause_its_lane_two_pause_the_domain(rig: Rig) -> None:
    engine = await rig.open(breaker={"backoffs": [3600]})
    gmail, yahoo = engine.lane("example.test", "gmail"), engine.lane("example.test", "yahoo")
    await rig.send(gmail, BLOCK, 3)
    assert gmail.breaker.phase.value == "open"
    assert yahoo.breaker.phase.value == "closed"
    assert engine.identities["domain:example.test"].breaker.phase.value == "closed"
    assert await rig.send(yahoo, OK, 1) == 1  # yahoo still takes our mail
    await rig.send(yahoo, BLOCK, 3)
    assert engine.identities["domain:example.test"].breaker.phase.value == "open"
    microsoft = engine.lane("example.test", "microsoft")
    assert not engine.permit(microsoft, 1).ok  # the domain as a whole is paused now
    await engine.flush()
    alerts = await engine.alerts.list("active")
    assert {a.target for a in alerts} >= {
        f"lane:{gmail.key}",
        f"lane:{yahoo.key}",
        "domain:example.test",
    }
