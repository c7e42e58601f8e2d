"""The reputation engine's store: lane/identity state, the remediation log, alerts, scores.

State rows are JSON blobs keyed by lane or identity ("lane:example.com|1.2.3.4|gmail",
"tenant:alice@example.com"); the engine keeps them in memory and writes the changed ones
every few seconds and at shutdown, so a restart (or a second node, later) starts from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from mailwarden.store.db import Database
from mailwarden.store.sql import aware
from mailwarden.store.tables import (
    reputation_actions,
    reputation_alerts,
    reputation_scores,
    reputation_state,
)

st, act, al, sc = reputation_state, reputation_actions, reputation_alerts, reputation_scores


@dataclass(frozen=True, slots=True)
class ActionRecord:
    at: datetime
    actor: str  # "auto" or the operator
    kind: str
    target: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    type: str
    severity: str
    target: str
    message: str
    details: Mapping[str, Any]
    status: str  # open | acknowledged | resolved
    count: int
    first_at: datetime
    last_at: datetime
    acked_by: str = ""
    acked_at: datetime | None = None
    resolved_by: str = ""
    resolved_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        for k in ("first_at", "last_at", "acked_at", "resolved_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        d["details"] = dict(self.details)
        return d


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    at: datetime
    subject: str
    value: float
    sample: int
    contributions: Mapping[str, float]


class ReputationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- state --------------------------------------------------------------------------
    async def load_states(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """{key: (kind, state)} for every stored lane and identity."""
        q = select(st).where(st.c.kind.in_(["lane", "identity"]))
        rows = await self.db.read(lambda c: c.execute(q).all())
        return {str(r.key): (str(r.kind), json.loads(r.state)) for r in rows}

    async def save_states(
        self, states: Mapping[str, tuple[str, Mapping[str, Any]]], now: datetime
    ) -> None:
        if not states:
            return

        def go(c: Connection) -> None:
            keys = list(states)
            have = {str(r[0]) for r in c.execute(select(st.c.key).where(st.c.key.in_(keys))).all()}
            rows = [
                {"key": k, "kind": kind, "state": json.dumps(s, sort_keys=True), "updated_at": now}
                for k, (kind, s) in states.items()
            ]
            new = [r for r in rows if r["key"] not in have]
            old = [r for r in rows if r["key"] in have]
            if new:
                c.execute(insert(st), new)
            for r in old:
                c.execute(update(st).where(st.c.key == r["key"]).values(**r))

        await self.db.write(go)

    async def rows(self, kind: str) -> dict[str, dict[str, Any]]:
        q = select(st.c.key, st.c.state).where(st.c.kind == kind)
        rows = await self.db.read(lambda c: c.execute(q).all())
        return {str(r.key): json.loads(r.state) for r in rows}

    async def delete_rows(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        stmt = delete(st).where(st.c.key.in_(list(keys)))
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    # -- remediation log ----------------------------------------------------------------
    async def add_actions(self, actions: Sequence[ActionRecord]) -> None:
        if not actions:
            return
        rows = [
            {
                "at": a.at,
                "actor": a.actor[:320],
                "kind": a.kind[:32],
                "target": a.target[:600],
                "reason": a.reason,
                "inputs": json.dumps(dict(a.inputs), sort_keys=True, default=str),
            }
            for a in actions
        ]
        await self.db.write(lambda c: c.execute(insert(act), rows))

    async def actions(
        self,
        *,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        """Newest first. ``target`` matches exactly or as a prefix ending in ":" or "|"."""
        q = select(act).order_by(act.c.at.desc(), act.c.id.desc()).limit(limit)
        if target:
            q = q.where((act.c.target == target) | act.c.target.like(_prefix(target), escape="\\"))
        if since is not None:
            q = q.where(act.c.at >= since)
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [_action(r) for r in rows]

    # -- alerts ---------------------------------------------------------------------------
    async def raise_alert(
        self,
        *,
        type: str,
        severity: str,
        target: str,
        message: str,
        details: Mapping[str, Any],
        now: datetime,
    ) -> tuple[AlertRecord, bool]:
        """Open an alert, or count a repeat of the same (type, target) while it is not
        resolved. Returns the alert and whether it is new."""
        dedupe = f"{type}|{target}"[:700]

        def go(c: Connection) -> tuple[int, bool]:
            row = c.execute(
                select(al.c.id)
                .where(al.c.dedupe == dedupe, al.c.status != "resolved")
                .order_by(al.c.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                c.execute(
                    update(al)
                    .where(al.c.id == row.id)
                    .values(
                        count=al.c.count + 1,
                        last_at=now,
                        message=message,
                        severity=severity,
                        details=json.dumps(dict(details), sort_keys=True, default=str),
                    )
                )
                return int(row.id), False
            res = c.execute(
                insert(al).values(
                    dedupe=dedupe,
                    type=type[:32],
                    severity=severity,
                    target=target[:600],
                    message=message,
                    details=json.dumps(dict(details), sort_keys=True, default=str),
                    status="open",
                    count=1,
                    first_at=now,
                    last_at=now,
                    acked_by="",
                    resolved_by="",
                )
            )
            assert res.inserted_primary_key is not None
            return int(res.inserted_primary_key[0]), True

        alert_id, new = await self.db.write(go)
        alert = await self.alert(alert_id)
        assert alert is not None
        return alert, new

    async def alert(self, alert_id: int) -> AlertRecord | None:
        row = await self.db.read(lambda c: c.execute(select(al).where(al.c.id == alert_id)).first())
        return _alert(row) if row is not None else None

    async def alerts(self, *, status: str | None = None, limit: int = 100) -> list[AlertRecord]:
        q = select(al).order_by(al.c.last_at.desc(), al.c.id.desc()).limit(limit)
        if status == "active":
            q = q.where(al.c.status != "resolved")
        elif status and status != "all":
            q = q.where(al.c.status == status)
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [_alert(r) for r in rows]

    async def set_alert_status(
        self, alert_id: int, status: str, actor: str, now: datetime
    ) -> AlertRecord | None:
        values: dict[str, Any] = {"status": status}
        if status == "acknowledged":
            values.update(acked_by=actor[:320], acked_at=now)
        elif status == "resolved":
            values.update(resolved_by=actor[:320], resolved_at=now)
        stmt = update(al).where(al.c.id == alert_id).values(**values)
        n = await self.db.write(lambda c: int(c.execute(stmt).rowcount))
        return await self.alert(alert_id) if n else None

    async def resolve_alerts(self, type: str, target: str, actor: str, now: datetime) -> int:
        """Resolve the open alert of (type, target), e.g. when a breaker closes again."""
        stmt = (
            update(al)
            .where(al.c.dedupe == f"{type}|{target}"[:700], al.c.status != "resolved")
            .values(status="resolved", resolved_by=actor[:320], resolved_at=now)
        )
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    # -- score history ------------------------------------------------------------------
    async def add_scores(self, scores: Sequence[ScoreRecord]) -> None:
        if not scores:
            return
        rows = [
            {
                "at": s.at,
                "subject": s.subject[:600],
                "value": float(s.value),
                "sample": int(s.sample),
                "contributions": json.dumps(dict(s.contributions), sort_keys=True),
            }
            for s in scores
        ]
        await self.db.write(lambda c: c.execute(insert(sc), rows))

    async def scores(
        self, subject: str, *, since: datetime | None = None, limit: int = 500
    ) -> list[ScoreRecord]:
        """Oldest first (for charts)."""
        q = select(sc).where(sc.c.subject == subject).order_by(sc.c.at.desc()).limit(limit)
        if since is not None:
            q = q.where(sc.c.at >= since)
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [
            ScoreRecord(
                aware(r.at) or r.at, r.subject, r.value, r.sample, json.loads(r.contributions)
            )
            for r in reversed(rows)
        ]

    async def prune_scores(self, before: datetime) -> int:
        stmt = delete(sc).where(sc.c.at < before)
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))


def _prefix(target: str) -> str:
    esc = target.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return esc + ("" if target.endswith((":", "|")) else "|") + "%"


def _action(r: Row[Any]) -> ActionRecord:
    return ActionRecord(
        aware(r.at) or r.at, r.actor, r.kind, r.target, r.reason, json.loads(r.inputs), int(r.id)
    )


def _alert(r: Row[Any]) -> AlertRecord:
    return AlertRecord(
        id=int(r.id),
        type=r.type,
        severity=r.severity,
        target=r.target,
        message=r.message,
        details=json.loads(r.details),
        status=r.status,
        count=int(r._mapping["count"]),
        first_at=aware(r.first_at) or r.first_at,
        last_at=aware(r.last_at) or r.last_at,
        acked_by=r.acked_by,
        acked_at=aware(r.acked_at),
        resolved_by=r.resolved_by,
        resolved_at=aware(r.resolved_at),
    )
