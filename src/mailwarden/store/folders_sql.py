"""Folders of an account for IMAP: create, rename, delete, subscriptions, quota usage.

RFC 3501 §2.3.1.1: a new mailbox gets a UIDVALIDITY larger than any this user had before
(``users.last_uidvalidity``), so a re-created name never reuses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from mailwarden.core.errors import AlreadyExists, NotFound
from mailwarden.store.db import Database
from mailwarden.store.mailbox_rows import (
    insert_mailboxes,
    mailbox_record,
    mailbox_row,
    mailbox_stats_query,
)
from mailwarden.store.records import (
    MailboxRecord,
)
from mailwarden.store.tables import (
    mailboxes,
    messages,
    subscriptions,
    users,
)


class FolderStore:
    """An account's mailboxes and subscriptions (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def highest_modseqs(self, ids: list[int]) -> dict[int, int]:
        """HIGHESTMODSEQ of these mailboxes (the change notifier's poll)."""
        q = select(mailboxes.c.id, mailboxes.c.highestmodseq).where(mailboxes.c.id.in_(ids))
        rows = await self.db.read(lambda c: c.execute(q).all())
        return {int(r.id): int(r.highestmodseq) for r in rows}

    async def mailboxes(self, user_id: int) -> list[MailboxRecord]:
        """The user's mailboxes, without counts (LIST needs none)."""
        q = select(mailboxes).where(mailboxes.c.user_id == user_id).order_by(mailboxes.c.id)
        return [mailbox_row(r) for r in await self.db.read(lambda c: c.execute(q).all())]

    async def mailbox(
        self, user_id: int, name: str, *, counts: bool = False
    ) -> MailboxRecord | None:
        """One mailbox by name; ``counts`` adds messages/unseen/size (STATUS), which
        costs a pass over its messages."""
        where = and_(mailboxes.c.user_id == user_id, mailboxes.c.name == name)
        q = mailbox_stats_query(where) if counts else select(mailboxes).where(where)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            return None
        return mailbox_record(row) if counts else mailbox_row(row)

    async def recent_count(self, mailbox_id: int) -> int:
        q = (
            select(func.count())
            .select_from(messages.join(mailboxes, mailboxes.c.id == messages.c.mailbox_id))
            .where(
                and_(
                    messages.c.mailbox_id == mailbox_id,
                    messages.c.uid >= mailboxes.c.first_recent_uid,
                )
            )
        )
        return int(await self.db.read(lambda c: c.execute(q).scalar_one()))

    async def create(
        self, user_id: int, names: Sequence[str], special_use: str | None, now: datetime
    ) -> None:
        """Create ``names[-1]`` and any missing ``names[:-1]`` (its parents, in order)."""

        def run(c: Connection) -> None:
            existing = set(
                c.execute(
                    select(mailboxes.c.name).where(
                        and_(mailboxes.c.user_id == user_id, mailboxes.c.name.in_(list(names)))
                    )
                ).scalars()
            )
            if names[-1] in existing:
                raise AlreadyExists(f"mailbox {names[-1]} already exists")
            todo = [n for n in names if n not in existing]
            insert_mailboxes(
                c, user_id, [(n, special_use if n == names[-1] else None) for n in todo], now
            )

        try:
            await self.db.write(run)
        except IntegrityError as exc:
            raise AlreadyExists(f"mailbox {names[-1]} already exists") from exc

    async def delete(self, user_id: int, name: str, delimiter: str) -> int:
        """Delete a mailbox without children; returns its id. Frees its quota."""

        def run(c: Connection) -> int:
            mb = c.execute(
                select(mailboxes.c.id).where(
                    and_(mailboxes.c.user_id == user_id, mailboxes.c.name == name)
                )
            ).first()
            if mb is None:
                raise NotFound(f"mailbox {name} does not exist")
            child = c.execute(
                select(mailboxes.c.id)
                .where(
                    and_(
                        mailboxes.c.user_id == user_id,
                        mailboxes.c.name.startswith(name + delimiter, autoescape=True),
                    )
                )
                .limit(1)
            ).first()
            if child is not None:
                raise AlreadyExists(f"mailbox {name} has children; delete them first")
            freed = c.execute(
                select(func.coalesce(func.sum(messages.c.size), 0)).where(
                    messages.c.mailbox_id == mb.id
                )
            ).scalar_one()
            c.execute(delete(messages).where(messages.c.mailbox_id == mb.id))
            c.execute(delete(mailboxes).where(mailboxes.c.id == mb.id))
            charge(c, user_id, -int(freed))
            return int(mb.id)

        return await self.db.write(run)

    async def rename(
        self, user_id: int, old: str, new_names: Sequence[str], delimiter: str, now: datetime
    ) -> list[int]:
        """Rename ``old`` (and its children) to ``new_names[-1]``, creating missing parents.

        Returns the ids of the renamed mailboxes. Keeps UIDs and UIDVALIDITY.
        """
        new = new_names[-1]

        def run(c: Connection) -> list[int]:
            rows = c.execute(
                select(mailboxes.c.id, mailboxes.c.name).where(mailboxes.c.user_id == user_id)
            ).all()
            by_name = {r.name: int(r.id) for r in rows}
            if old not in by_name:
                raise NotFound(f"mailbox {old} does not exist")
            prefix = old + delimiter
            moving = {n: i for n, i in by_name.items() if n == old or n.startswith(prefix)}
            targets = {i: new + n[len(old) :] for n, i in moving.items()}
            for target in targets.values():
                if target in by_name and by_name[target] not in moving.values():
                    raise AlreadyExists(f"mailbox {target} already exists")
            for i in targets:
                c.execute(update(mailboxes).where(mailboxes.c.id == i).values(name=f"\x7f{i}"))
            for i, target in targets.items():  # two steps: a child may take a sibling's name
                c.execute(update(mailboxes).where(mailboxes.c.id == i).values(name=target))
            missing = [n for n in new_names[:-1] if n not in by_name and n not in moving]
            insert_mailboxes(c, user_id, [(n, None) for n in missing], now)
            return list(targets)

        try:
            return await self.db.write(run)
        except IntegrityError as exc:
            raise AlreadyExists(f"mailbox {new} already exists") from exc

    async def subscriptions(self, user_id: int) -> list[str]:
        q = select(subscriptions.c.name).where(subscriptions.c.user_id == user_id)
        return list(await self.db.read(lambda c: c.execute(q).scalars().all()))

    async def subscribe(self, user_id: int, name: str) -> None:
        def run(c: Connection) -> None:
            found = c.execute(
                select(subscriptions.c.id).where(
                    and_(subscriptions.c.user_id == user_id, subscriptions.c.name == name)
                )
            ).first()
            if found is None:
                c.execute(insert(subscriptions).values(user_id=user_id, name=name))

        await self.db.write(run)

    async def unsubscribe(self, user_id: int, name: str) -> int:
        stmt = delete(subscriptions).where(
            and_(subscriptions.c.user_id == user_id, subscriptions.c.name == name)
        )
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def quota(self, user_id: int) -> tuple[int, int]:
        """(bytes used, quota in bytes or 0) for the user."""
        q = select(users.c.used_bytes, users.c.quota_bytes).where(users.c.id == user_id)
        u = await self.db.read(lambda c: c.execute(q).first())
        if u is None:
            raise NotFound("user no longer exists")
        return int(u.used_bytes), int(u.quota_bytes)


def charge(c: Connection, user_id: int, delta: int) -> None:
    if delta:
        c.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(
                used_bytes=case(
                    (users.c.used_bytes + delta < 0, 0), else_=users.c.used_bytes + delta
                )
            )
        )
