"""Mailbox rows shared by the account store and the IMAP folder store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, select, update

from mailwarden.store.records import MailboxRecord
from mailwarden.store.tables import mailboxes, messages, users


def mailbox_stats_query(where: Any) -> Any:
    """Mailboxes matching ``where`` with their message count, unseen count and size."""
    unseen = func.sum(case((~messages.c.flags.contains("\\Seen", autoescape=True), 1), else_=0))
    ids = select(mailboxes.c.id).where(where)
    stats = (
        select(
            messages.c.mailbox_id,
            func.count().label("n"),
            unseen.label("unseen"),
            func.coalesce(func.sum(messages.c.size), 0).label("size"),
        )
        .where(messages.c.mailbox_id.in_(ids))
        .group_by(messages.c.mailbox_id)
        .subquery()
    )
    return (
        select(mailboxes, stats.c.n, stats.c.unseen, stats.c.size)
        .select_from(mailboxes.outerjoin(stats, stats.c.mailbox_id == mailboxes.c.id))
        .where(where)
        .order_by(mailboxes.c.id)
    )


def mailbox_row(r: Any) -> MailboxRecord:
    """A mailbox without its counts (a plain ``mailboxes`` row)."""
    return MailboxRecord(
        r.id,
        r.user_id,
        r.name,
        r.special_use,
        r.uidvalidity,
        r.uidnext,
        r.highestmodseq,
        r.first_recent_uid,
    )


def mailbox_record(r: Row[Any]) -> MailboxRecord:
    """A row of :func:`mailbox_stats_query`: the mailbox with its counts."""
    return replace(
        mailbox_row(r), messages=int(r.n or 0), unseen=int(r.unseen or 0), size=int(r.size or 0)
    )


def next_uidvalidity(c: Connection, user_id: int, now: datetime, count: int = 1) -> int:
    """Reserve ``count`` UIDVALIDITY values for the user's new mailboxes; returns the first.

    RFC 3501 §2.3.1.1: a re-created mailbox must not reuse a UIDVALIDITY. Values follow
    the clock (seconds) and are always larger than any handed out before to this user.
    """
    ts = int(now.timestamp()) % 2**32 or 1
    last = c.execute(select(users.c.last_uidvalidity).where(users.c.id == user_id)).scalar_one()
    first = max(int(last) + 1, ts)
    if first + count - 1 >= 2**32:  # §9 nz-number; wrap (in 2106) to small values
        first = 1
    c.execute(update(users).where(users.c.id == user_id).values(last_uidvalidity=first + count - 1))
    return first


def insert_mailboxes(
    c: Connection, user_id: int, names: Sequence[tuple[str, str | None]], now: datetime
) -> None:
    """New empty mailboxes: (name, special-use attribute or None) pairs."""
    if not names:
        return
    first = next_uidvalidity(c, user_id, now, len(names))
    c.execute(
        insert(mailboxes),
        [
            {
                "user_id": user_id,
                "name": name,
                "special_use": role,
                "uidvalidity": first + i,
                "uidnext": 1,
                "highestmodseq": 1,
                "first_recent_uid": 1,
                "created_at": now,
            }
            for i, (name, role) in enumerate(names)
        ],
    )
