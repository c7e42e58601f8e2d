"""The reputation engine's store on SQLite and PostgreSQL: state rows, the remediation log,
alert de-duplication, score history, pauses and commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailwarden.core.clock import FakeClock
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.pauses import Pauses
from mailwarden.store.db import Database
from mailwarden.store.reputation_sql import ActionRecord, ReputationStore, ScoreRecord
from mwserver import postgres_database

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[ReputationStore]:
    db = Database(db_url)
    await db.migrate()
    yield ReputationStore(db)
    await db.close()


async def test_states_are_upserted_and_reloaded(store: ReputationStore) -> None:
    await store.save_states({"a|*|gmail": ("lane", {"rate": {"rate": 10.0}})}, NOW)
    await store.save_states(
        {"a|*|gmail": ("lane", {"rate": {"rate": 5.0}}), "domain:a": ("identity", {})}, NOW
    )
    states = await store.load_states()
    assert states["a|*|gmail"] == ("lane", {"rate": {"rate": 5.0}})
    assert states["domain:a"] == ("identity", {})


async def test_actions_newest_first_and_by_target_prefix(store: ReputationStore) -> None:
    await store.add_actions(
        [
            ActionRecord(NOW, "auto", "throttle", "lane:a.test|*|gmail", "421", {"rate": 5}),
            ActionRecord(NOW + timedelta(seconds=1), "carol", "pause", "domain:a.test", "x"),
            ActionRecord(NOW + timedelta(seconds=2), "auto", "ramp", "lane:b.test|*|gmail", "y"),
        ]
    )
    assert [a.kind for a in await store.actions()] == ["ramp", "pause", "throttle"]
    lane_a = await store.actions(target="lane:a.test")
    assert [a.kind for a in lane_a] == ["throttle"] and lane_a[0].inputs == {"rate": 5}
    assert [a.actor for a in await store.actions(target="domain:a.test")] == ["carol"]


async def test_alerts_deduplicate_until_resolved(store: ReputationStore) -> None:
    clock = FakeClock(NOW)
    alerts = AlertService(store, clock)
    seen: list[int] = []

    async def listener(a: object) -> None:
        seen.append(a.id)

    alerts.listeners.append(listener)
    a1 = await alerts.raise_("breaker_open", "critical", "lane:x", "opened", {"blocks": 3})
    clock.advance(60)
    a2 = await alerts.raise_("breaker_open", "critical", "lane:x", "opened again", {})
    assert a1.id == a2.id and a2.count == 2 and a2.message == "opened again"
    assert seen == [a1.id]  # listeners hear about a new alert once
    acked = await alerts.acknowledge(a1.id, "dave")
    assert acked is not None and acked.status == "acknowledged" and acked.acked_by == "dave"
    assert await alerts.resolve("breaker_open", "lane:x", "auto") == 1
    a3 = await alerts.raise_("breaker_open", "critical", "lane:x", "third", {})
    assert a3.id != a1.id and a3.count == 1
    assert [a.id for a in await alerts.list("active")] == [a3.id]
    with pytest.raises(ValueError, match="severity"):
        await alerts.raise_("x", "loud", "t", "m")


async def test_pauses_and_commands_are_shared_through_the_store(store: ReputationStore) -> None:
    clock = FakeClock(NOW)
    writer, reader = Pauses(store, clock), Pauses(store, clock, ttl=0)
    await writer.pause("tenant:bob@a.test", "auto", "spike", {"last_hour": 900})
    assert await reader.paused("tenant:bob@a.test") is not None
    assert "spike" in (reader.find("domain:a.test", "tenant:bob@a.test") or "")
    await writer.set_warmup("domain:a.test", 3, "carol")
    assert await writer.resume("tenant:bob@a.test", "carol")
    assert await reader.paused("tenant:bob@a.test") is None
    cmds = await reader.take_commands()
    assert [c["command"] for c in cmds] == ["warmup", "resume"]
    assert await reader.take_commands() == []
    with pytest.raises(ValueError, match="KIND:VALUE"):
        await writer.pause("bob", "x", "y")
    kinds = [(a.kind, a.actor) for a in await store.actions()]
    assert ("guardrail_pause", "auto") in kinds and ("resume", "carol") in kinds


async def test_score_history_oldest_first(store: ReputationStore) -> None:
    await store.add_scores(
        [
            ScoreRecord(NOW + timedelta(minutes=i), "domain:a", 90.0 - i, 100, {"x": i})
            for i in (0, 5)
        ]
    )
    hist = await store.scores("domain:a")
    assert [h.value for h in hist] == [90.0, 85.0] and hist[1].contributions == {"x": 5}
    assert await store.prune_scores(NOW + timedelta(minutes=1)) == 1
