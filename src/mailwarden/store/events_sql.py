"""Delivery events: written with outcomes (queue_sql.py), read here by time range and dimension.

Every dimension the reputation engine and dashboard slice by has an (dimension, at) index,
so "Gmail's replies in the last hour" or "everything alice sent today" is an index range
scan, not a table scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select

from mailwarden.core.events import DeliveryEvent, Outcome
from mailwarden.store.db import Database
from mailwarden.store.sql import aware
from mailwarden.store.tables import delivery_events

ev = delivery_events
# Dimensions that can filter or group events (each has an index with "at").
DIMENSIONS = (
    "outcome",
    "queue_id",
    "recipient",
    "recipient_domain",
    "sender_domain",
    "account",
    "mx_host",
    "mx_ip",
    "source_ip",
)
_FIELDS = [f.name for f in fields(DeliveryEvent)]


def _where(since: datetime | None, until: datetime | None, filters: Mapping[str, str]) -> list[Any]:
    conds: list[Any] = []
    if since is not None:
        conds.append(ev.c.at >= since)
    if until is not None:
        conds.append(ev.c.at < until)
    for key, value in filters.items():
        if key not in DIMENSIONS:
            raise ValueError(f"cannot filter events by {key!r}; use one of {', '.join(DIMENSIONS)}")
        conds.append(ev.c[key] == value)
    return conds


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        filters: Mapping[str, str] | None = None,
        limit: int = 1000,
    ) -> list[DeliveryEvent]:
        """Events in [since, until) matching every filter, newest first."""
        q = (
            select(ev)
            .where(*_where(since, until, filters or {}))
            .order_by(ev.c.at.desc(), ev.c.id.desc())
            .limit(limit)
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [_event(r) for r in rows]

    async def stream(
        self,
        *,
        since: datetime,
        after: int = 0,
        outcomes: Sequence[str] = (),
        batch: int = 5000,
    ) -> AsyncIterator[list[tuple[int, DeliveryEvent]]]:
        """(id, event) of every event at or after ``since`` with an id above ``after``
        (and one of ``outcomes``, if given), oldest first, in batches (for replays)."""
        last = after
        while True:
            q = select(ev).where(ev.c.at >= since, ev.c.id > last).order_by(ev.c.id).limit(batch)
            if outcomes:
                q = q.where(ev.c.outcome.in_(list(outcomes)))

            def go(c: Connection, q: Any = q) -> Sequence[Row[Any]]:
                return c.execute(q).all()

            rows = await self.db.read(go)
            if not rows:
                return
            last = int(rows[-1].id)
            yield [(int(r.id), _event(r)) for r in rows]

    async def known_recipients(self, account: str, recipients: list[str]) -> set[str]:
        """Those of ``recipients`` that ``account`` has any delivery event for."""
        q = (
            select(ev.c.recipient)
            .where(ev.c.recipient.in_(recipients), ev.c.account == account)
            .distinct()
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        return {str(r[0]).lower() for r in rows}

    async def counts(
        self,
        group_by: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, int]]:
        """{dimension value: {outcome: count}} over the range."""
        if group_by not in DIMENSIONS:
            raise ValueError(f"cannot group events by {group_by!r}")
        col = ev.c[group_by]
        q = (
            select(col, ev.c.outcome, func.count())
            .where(*_where(since, until, filters or {}))
            .group_by(col, ev.c.outcome)
        )
        out: dict[str, dict[str, int]] = {}
        for key, outcome, n in await self.db.read(lambda c: c.execute(q).all()):
            out.setdefault(str(key), {})[str(outcome)] = int(n)
        return out


def _event(r: Row[Any]) -> DeliveryEvent:
    values = {name: getattr(r, name) for name in _FIELDS}
    values["at"] = aware(r.at) or r.at
    values["outcome"] = Outcome(r.outcome)
    return DeliveryEvent(**values)
