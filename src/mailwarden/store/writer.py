"""Local delivery writes: one message filed for every target, all or nothing.

Runs through the group commit (store/batch.py), so concurrent deliveries share one
transaction and one fsync.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from mailwarden.core.errors import NotFound, QuotaExceeded
from mailwarden.store.batch import GroupCommit
from mailwarden.store.db import Database
from mailwarden.store.records import Delivered, Delivery, NewMessage
from mailwarden.store.tables import mailboxes, messages, users


class DeliveryWriter:
    def __init__(self, db: Database) -> None:
        self._batch = GroupCommit(db, "deliveries")

    async def deliver(self, message: NewMessage, targets: Sequence[Delivery]) -> list[Delivered]:
        """Durably file ``message`` for every target; returns once committed."""
        return await self._batch.run(lambda c: _deliver_one(c, message, targets))


# Statements are built once and run with parameters: building and cache-keying a new
# statement per message costs more than executing it.
_LOCK_USERS = (
    select(users.c.id, users.c.used_bytes, users.c.quota_bytes)
    .where(users.c.id.in_(bindparam("p_ids", expanding=True)))
    .with_for_update()  # PostgreSQL: row locks; SQLite: writes are serialised anyway
)
_CHARGE = (
    update(users)
    .where(users.c.id == bindparam("p_user"))
    .values(used_bytes=users.c.used_bytes + bindparam("p_add"))
)


def _allocate(by: Any) -> Any:
    """Find the user's mailbox (by special-use role or by name) and bump UIDNEXT/MODSEQ."""
    target = (
        select(mailboxes.c.id)
        .where(and_(mailboxes.c.user_id == bindparam("p_user"), by == bindparam("p_box")))
        .order_by(mailboxes.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        update(mailboxes)
        .where(mailboxes.c.id == target)
        .values(uidnext=mailboxes.c.uidnext + 1, highestmodseq=mailboxes.c.highestmodseq + 1)
        .returning(mailboxes.c.id, mailboxes.c.uidnext, mailboxes.c.highestmodseq)
    )


_ALLOCATE_BY_ROLE = _allocate(mailboxes.c.special_use)
_ALLOCATE_BY_NAME = _allocate(mailboxes.c.name)
_INSERT_MESSAGES = insert(messages)


def _deliver_one(
    c: Connection, message: NewMessage, targets: Sequence[Delivery]
) -> list[Delivered] | Exception:
    """One message's inserts inside the batch transaction; no writes if it is refused."""
    size = message.size
    per_user = Counter(t.user_id for t in targets)
    rows = c.execute(_LOCK_USERS, {"p_ids": sorted(per_user)}).all()
    usage = {r.id: (int(r.used_bytes), int(r.quota_bytes)) for r in rows}
    for t in targets:
        if t.user_id not in usage:
            return NotFound(f"recipient {t.rcpt_to} no longer exists")
        used, quota = usage[t.user_id]
        if t.enforce_quota and quota and used + size * per_user[t.user_id] > quota:
            return QuotaExceeded(f"mailbox of {t.rcpt_to} is over quota")
    for user_id, n in per_user.items():
        c.execute(_CHARGE, {"p_user": user_id, "p_add": size * n})
    out: list[Delivered] = []
    new_rows: list[dict[str, Any]] = []
    for t in targets:
        mailbox_id, uid, modseq = _allocate_uid(c, t.user_id, t.mailbox)
        new_rows.append(message_row(message, t, mailbox_id, uid, modseq))
        out.append(Delivered(t.user_id, mailbox_id, uid))
    c.execute(_INSERT_MESSAGES, new_rows)
    return out


def _allocate_uid(c: Connection, user_id: int, name: str) -> tuple[int, int, int]:
    """Next UID and MODSEQ in the user's mailbox ``name``; unknown roles fall back to INBOX."""
    stmt = _ALLOCATE_BY_ROLE if name.startswith("\\") else _ALLOCATE_BY_NAME
    row = c.execute(stmt, {"p_user": user_id, "p_box": name}).first()
    if row is None:
        if name == "INBOX":
            raise NotFound(f"user {user_id} has no INBOX")
        return _allocate_uid(c, user_id, "INBOX")
    return int(row.id), int(row.uidnext) - 1, int(row.highestmodseq)


def message_row(
    m: NewMessage, t: Delivery, mailbox_id: int, uid: int, modseq: int
) -> dict[str, Any]:
    h = m.headers
    return {
        "mailbox_id": mailbox_id,
        "uid": uid,
        "modseq": modseq,
        "blob": m.blob,
        "size": m.size,
        "internal_date": m.internal_date,
        "flags": " ".join(m.flags),
        "mail_from": m.mail_from,
        "rcpt_to": t.rcpt_to,
        "message_id": h.message_id[:998],
        "subject": h.subject,
        "from_addr": h.from_addr,
        "to_addr": h.to_addr,
        "cc_addr": h.cc_addr,
        "in_reply_to": h.in_reply_to,
        "date_header": h.date,
        "auth_results": m.auth_results,
    }
