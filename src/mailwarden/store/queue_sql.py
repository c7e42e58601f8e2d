"""The outbound queue, VERP tokens and returned bounces (SQLAlchemy Core, SQLite and PostgreSQL).

A message row holds the envelope and a blob key; each recipient row has its own state,
attempt count and next attempt time. A runner *claims* due recipients by writing its id
into ``claimed_by`` in one transaction, so two runners never deliver the same recipient,
and a runner that starts after a crash releases every claim (the interrupted deliveries
are then retried). Finished messages leave the queue in the same transaction as their
last outcome; the delivery events keep the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from mailwarden.core.events import FIELDS as EVENT_FIELDS
from mailwarden.core.events import DeliveryEvent
from mailwarden.store.batch import WriteBatcher, merged
from mailwarden.store.blobs import BlobStore
from mailwarden.store.db import Database
from mailwarden.store.records import (
    PENDING_STATES,
    NewQueued,
    QueuedMessage,
    QueuedRecipient,
    RecipientUpdate,
    ReturnedBounce,
    SentToken,
)
from mailwarden.store.sql import aware
from mailwarden.store.tables import (
    delivery_events,
    queue_messages,
    queue_recipients,
    returned_bounces,
    sent_tokens,
)

qm, qr = queue_messages, queue_recipients
# Columns of queue_messages that are fields of NewQueued and QueuedMessage alike.
_MESSAGE_FIELDS = (
    "queue_id",
    "token",
    "blob",
    "size",
    "mail_from",
    "return_path",
    "sender_domain",
    "account",
    "message_id",
    "held",
    "created_at",
    "expires_at",
    "body",
)
_PENDING = qr.c.state.in_(PENDING_STATES)


class QueueStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self._enqueued: WriteBatcher[NewQueued] = WriteBatcher(
            db, "enqueue", merged(_enqueue), max_items=512
        )
        self._outcomes: WriteBatcher[_Outcomes] = WriteBatcher(
            db, "outcomes", merged(_record_merged), max_items=512
        )

    # -- entering the queue ------------------------------------------------------------
    async def enqueue(self, m: NewQueued) -> None:
        """Commit the message, its recipients and its VERP token; durable on return."""
        await self._enqueued.add(m)

    # -- runners -----------------------------------------------------------------------
    async def release_claims(self, runner: str | None = None) -> int:
        """Forget claims (all, or one runner's): their deliveries were interrupted."""
        stmt = update(qr).where(qr.c.claimed_by.is_not(None)).values(claimed_by=None)
        if runner is not None:
            stmt = stmt.where(qr.c.claimed_by == runner)
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def claim_due(self, runner: str, now: datetime, limit: int) -> list[QueuedMessage]:
        """Claim up to ``limit`` due recipients of unheld messages, grouped by message."""
        return await self.db.write(lambda c: _claim(c, runner, now, limit))

    async def record(
        self, updates: Sequence[RecipientUpdate], events: Sequence[DeliveryEvent]
    ) -> None:
        """Store outcomes and their events, and drop finished messages; committed on return.
        Concurrent calls are merged into one set of statements."""
        done: list[str] = await self._outcomes.add((updates, events))
        await self.blobs.discard(done)  # private blobs of messages that left the queue

    # -- operators ---------------------------------------------------------------------
    async def list_messages(
        self, *, held: bool | None = None, limit: int = 1000
    ) -> list[QueuedMessage]:
        q = select(qm).order_by(qm.c.created_at, qm.c.id).limit(limit)
        if held is not None:
            q = q.where(qm.c.held.is_(held))
        return await self.db.read(lambda c: _load(c, c.execute(q).all()))

    async def get(self, queue_id: str) -> QueuedMessage | None:
        q = select(qm).where(qm.c.queue_id == queue_id)
        found = await self.db.read(lambda c: _load(c, c.execute(q).all()))
        return found[0] if found else None

    async def counts(self) -> dict[str, int]:
        """Recipients per state, and held messages, in one snapshot."""
        by_state = select(qr.c.state, func.count()).group_by(qr.c.state)
        held = select(func.count()).select_from(qm).where(qm.c.held.is_(True))

        def go(c: Connection) -> dict[str, int]:
            out = {str(r[0]): int(r[1]) for r in c.execute(by_state).all()}
            out["held_messages"] = int(c.execute(held).scalar_one())
            return out

        return await self.db.read(go)

    async def postpone(self, groups: Sequence[tuple[Sequence[int], datetime, int]]) -> None:
        """Our own policy holds claimed recipients back. For each (ids, until, held): release
        the claim, make them due at ``until`` and add ``held`` seconds to their held time;
        no attempt is counted. One transaction."""
        stmt = (
            update(qr)
            .where(qr.c.id == bindparam("p_id"))
            .values(
                claimed_by=None,
                next_attempt_at=bindparam("p_until"),
                held_seconds=qr.c.held_seconds + bindparam("p_held"),
            )
        )
        rows = [
            {"p_id": i, "p_until": until, "p_held": held}
            for ids, until, held in groups
            for i in ids
        ]
        if rows:
            await self.db.write(lambda c: c.execute(stmt, rows))

    async def usage(self, account: str, now: datetime) -> tuple[int, int, int, datetime | None]:
        """Recipients ``account`` queued in the last hour, day and week, and its first
        submission within the week (tenant guardrails), in one snapshot."""
        t = sent_tokens
        total = func.coalesce(func.sum(t.c.rcpts), 0)
        q = select(total).where(t.c.account == account, t.c.created_at >= bindparam("p_since"))
        first = select(func.min(t.c.created_at)).where(
            t.c.account == account, t.c.created_at >= now - timedelta(days=7)
        )

        def go(c: Connection) -> tuple[int, int, int, datetime | None]:
            spans = [timedelta(hours=1), timedelta(days=1), timedelta(days=7)]
            h, d, w = (int(c.execute(q, {"p_since": now - s}).scalar_one()) for s in spans)
            return h, d, w, aware(c.execute(first).scalar_one())

        return await self.db.read(go)

    async def set_held(self, queue_id: str | None, held: bool) -> int:
        stmt = update(qm).values(held=held)
        if queue_id is not None:
            stmt = stmt.where(qm.c.queue_id == queue_id)
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def retry_now(self, queue_id: str | None, now: datetime) -> int:
        """Make pending recipients (of one message, or all) due now; returns how many."""
        stmt = update(qr).where(_PENDING).values(next_attempt_at=now)
        if queue_id is not None:
            ids = select(qm.c.id).where(qm.c.queue_id == queue_id).scalar_subquery()
            stmt = stmt.where(qr.c.message_id == ids)
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def delete(self, queue_id: str) -> QueuedMessage | None:
        """Remove a message from the queue without a bounce (postsuper -d)."""

        def go(c: Connection) -> QueuedMessage | None:
            found = _load(c, c.execute(select(qm).where(qm.c.queue_id == queue_id)).all())
            if found:
                c.execute(delete(qr).where(qr.c.message_id == found[0].id))
                c.execute(delete(qm).where(qm.c.id == found[0].id))
            return found[0] if found else None

        gone = await self.db.write(go)
        if gone is not None and gone.blob:
            await self.blobs.discard([gone.blob])
        return gone

    # -- VERP tokens and returned bounces ---------------------------------------------
    async def sent_token(self, token: str) -> SentToken | None:
        q = select(sent_tokens).where(sent_tokens.c.token == token)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            return None
        return SentToken(
            row.token,
            row.queue_id,
            row.mail_from,
            row.account,
            row.message_id,
            aware(row.created_at) or row.created_at,
        )

    async def add_returned_bounces(self, bounces: Sequence[ReturnedBounce]) -> None:
        rows = [
            {
                "at": b.at,
                "token": b.token,
                "queue_id": b.queue_id,
                "recipient": b.recipient[:320],
                "action": b.action[:16],
                "status": b.status[:16],
                "diagnostic": b.diagnostic,
                "remote_mta": b.remote_mta[:255],
                "blob": b.blob,
            }
            for b in bounces
        ]
        if rows:
            await self.db.write(lambda c: c.execute(insert(returned_bounces), rows))

    async def returned_bounces(self, queue_id: str) -> list[ReturnedBounce]:
        q = (
            select(returned_bounces)
            .where(returned_bounces.c.queue_id == queue_id)
            .order_by(returned_bounces.c.id)
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [
            ReturnedBounce(
                aware(r.at) or r.at,
                r.token,
                r.queue_id,
                r.recipient,
                r.action,
                r.status,
                r.diagnostic,
                r.remote_mta,
                r.blob,
            )
            for r in rows
        ]


# Statements are built once and run with parameters: building and cache-keying a new
# statement per message costs more than running it.
_INSERT_MESSAGE = insert(qm)
_IDS_OF = select(qm.c.queue_id, qm.c.id).where(
    qm.c.queue_id.in_(bindparam("p_qids", expanding=True))
)
_INSERT_RECIPIENTS = insert(qr)
_INSERT_TOKEN = insert(sent_tokens)
_INSERT_EVENTS = insert(delivery_events)
_MESSAGES_OF = (
    select(qr.c.message_id).where(qr.c.id.in_(bindparam("p_ids", expanding=True))).distinct()
)
_STILL_PENDING = (
    select(qr.c.message_id)
    .where(qr.c.message_id.in_(bindparam("p_msgs", expanding=True)), _PENDING)
    .distinct()
)
_DELETE_RECIPIENTS = delete(qr).where(qr.c.message_id.in_(bindparam("p_msgs", expanding=True)))
_BLOBS_OF = select(qm.c.blob).where(qm.c.id.in_(bindparam("p_msgs", expanding=True)))
_DELETE_MESSAGES = delete(qm).where(qm.c.id.in_(bindparam("p_msgs", expanding=True)))


def _enqueue(c: Connection, items: list[NewQueued]) -> None:
    """Several messages, their recipients and tokens in four statements."""
    rows = [{k: getattr(m, k) for k in _MESSAGE_FIELDS} for m in items]
    for row in rows:
        row["message_id"] = row["message_id"][:998]
    c.execute(_INSERT_MESSAGE, rows)
    found = c.execute(_IDS_OF, {"p_qids": [m.queue_id for m in items]}).all()
    ids = {str(r.queue_id): int(r.id) for r in found}
    c.execute(
        _INSERT_RECIPIENTS,
        [
            {
                "message_id": ids[m.queue_id],
                "rcpt": rcpt,
                "domain": rcpt.rpartition("@")[2].lower(),
                "state": "queued",
                "attempts": 0,
                "next_attempt_at": m.created_at,
                "claimed_by": None,
                "last_code": None,
                "last_enhanced": "",
                "last_text": "",
                "updated_at": m.created_at,
            }
            for m in items
            for rcpt in m.recipients
        ],
    )
    c.execute(
        _INSERT_TOKEN,
        [
            {
                "token": m.token,
                "queue_id": m.queue_id,
                "mail_from": m.mail_from,
                "account": m.account,
                "message_id": m.message_id[:998],
                "created_at": m.created_at,
                "rcpts": len(m.recipients),
            }
            for m in items
        ],
    )


def _claim(c: Connection, runner: str, now: datetime, limit: int) -> list[QueuedMessage]:
    due = c.execute(
        select(qr.c.id)
        .select_from(qr.join(qm, qm.c.id == qr.c.message_id))
        .where(
            _PENDING,
            qr.c.claimed_by.is_(None),
            qr.c.next_attempt_at <= now,
            qm.c.held.is_(False),
        )
        .order_by(qr.c.next_attempt_at, qr.c.id)
        .limit(limit)
    ).all()
    ids = [int(r.id) for r in due]
    if not ids:
        return []
    c.execute(
        update(qr).where(qr.c.id.in_(bindparam("p_ids", expanding=True))).values(claimed_by=runner),
        {"p_ids": ids},
    )
    rcpts = c.execute(select(qr).where(qr.c.id.in_(ids)).order_by(qr.c.message_id, qr.c.id)).all()
    msg_ids = sorted({int(r.message_id) for r in rcpts})
    msgs = c.execute(select(qm).where(qm.c.id.in_(msg_ids))).all()
    return _assemble(msgs, rcpts)


_UPDATE_RCPT = (
    update(qr)
    .where(qr.c.id == bindparam("p_id"))
    .values(
        state=bindparam("p_state"),
        attempts=bindparam("p_attempts"),
        next_attempt_at=bindparam("p_next"),
        claimed_by=None,
        last_code=bindparam("p_code"),
        last_enhanced=bindparam("p_enhanced"),
        last_text=bindparam("p_text"),
        updated_at=bindparam("p_at"),
    )
)


_Outcomes = tuple[Sequence[RecipientUpdate], Sequence[DeliveryEvent]]


def _record_merged(c: Connection, items: list[_Outcomes]) -> list[str]:
    return _record(c, [u for ups, _ in items for u in ups], [e for _, evs in items for e in evs])


def _record(
    c: Connection, updates: Sequence[RecipientUpdate], events: Sequence[DeliveryEvent]
) -> list[str]:
    """Returns the private blob keys of messages that left the queue (to delete)."""
    if updates:
        c.execute(
            _UPDATE_RCPT,
            [
                {
                    "p_id": u.recipient_id,
                    "p_state": u.state,
                    "p_attempts": u.attempts,
                    "p_next": u.next_attempt_at,
                    "p_code": u.code,
                    "p_enhanced": u.enhanced[:16],
                    "p_text": u.text,
                    "p_at": u.at or u.next_attempt_at,
                }
                for u in updates
            ],
        )
    if events:
        c.execute(_INSERT_EVENTS, [event_row(e) for e in events])
    if not updates:
        return []
    ids = [u.recipient_id for u in updates]
    touched = [int(r[0]) for r in c.execute(_MESSAGES_OF, {"p_ids": ids}).all()]
    pending = {int(r[0]) for r in c.execute(_STILL_PENDING, {"p_msgs": touched}).all()}
    finished = [m for m in touched if m not in pending]
    blobs: list[str] = []
    if finished:
        blobs = [str(r[0]) for r in c.execute(_BLOBS_OF, {"p_msgs": finished}).all() if r[0]]
        c.execute(_DELETE_RECIPIENTS, {"p_msgs": finished})
        c.execute(_DELETE_MESSAGES, {"p_msgs": finished})
    return blobs


def event_row(e: DeliveryEvent) -> dict[str, Any]:
    row = {name: getattr(e, name) for name in EVENT_FIELDS}
    row["outcome"] = e.outcome.value
    row["message_id"] = e.message_id[:998]
    row["enhanced"] = e.enhanced[:16]
    row["tls_version"] = e.tls_version[:16]
    row["route"] = e.route[:255]
    row["provider"] = e.provider[:64]
    row["reply_class"] = e.reply_class[:24]
    return row


def _load(c: Connection, msgs: Sequence[Row[Any]]) -> list[QueuedMessage]:
    if not msgs:
        return []
    ids = [int(m.id) for m in msgs]
    rcpts = c.execute(select(qr).where(qr.c.message_id.in_(ids)).order_by(qr.c.id)).all()
    by_id = {m.id: m for m in _assemble(msgs, rcpts)}
    return [by_id[i] for i in ids]


def _assemble(msgs: Sequence[Row[Any]], rcpts: Sequence[Row[Any]]) -> list[QueuedMessage]:
    grouped: dict[int, list[QueuedRecipient]] = {}
    for r in rcpts:
        grouped.setdefault(int(r.message_id), []).append(
            QueuedRecipient(
                id=r.id,
                rcpt=r.rcpt,
                domain=r.domain,
                state=r.state,
                attempts=r.attempts,
                next_attempt_at=aware(r.next_attempt_at) or r.next_attempt_at,
                last_code=r.last_code,
                last_enhanced=r.last_enhanced,
                last_text=r.last_text,
                claimed=r.claimed_by is not None,
                held_seconds=int(r.held_seconds or 0),
            )
        )
    return [
        QueuedMessage(
            id=m.id,
            **{k: getattr(m, k) for k in _MESSAGE_FIELDS if not k.endswith("_at")},
            created_at=aware(m.created_at) or m.created_at,
            expires_at=aware(m.expires_at) or m.expires_at,
            recipients=tuple(grouped.get(int(m.id), ())),
        )
        for m in msgs
    ]
