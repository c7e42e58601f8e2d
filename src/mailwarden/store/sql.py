"""SQLAlchemy Core implementation of the store. Same code on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mailwarden.core.errors import AlreadyExists, NotFound, QuotaExceeded
from mailwarden.store.db import Database
from mailwarden.store.records import (
    AliasRecord,
    Delivered,
    Delivery,
    DomainRecord,
    HeaderSummary,
    MailboxRecord,
    MessageRecord,
    NewMessage,
    UserRecord,
)
from mailwarden.store.tables import aliases, domains, mailboxes, messages, users

# RFC 6154 special-use mailboxes created for every account.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def _domain(r: Row[Any]) -> DomainRecord:
    return DomainRecord(r.id, r.name, _aware(r.created_at) or r.created_at)


def _user(r: Row[Any]) -> UserRecord:
    return UserRecord(
        r.id, r.address, r.domain_id, r.password_hash, r.quota_bytes, r.used_bytes, r.disabled
    )


class SqlStore:
    """All persistent state except message bytes (see BlobStore)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- domains -------------------------------------------------------------------
    async def add_domain(self, name: str, now: datetime) -> DomainRecord:
        try:
            async with self.db.write() as c:
                res = await c.execute(
                    insert(domains).values(name=name, created_at=now).returning(domains.c.id)
                )
                return DomainRecord(int(res.scalar_one()), name, now)
        except IntegrityError as exc:
            raise AlreadyExists(f"domain {name} already exists") from exc

    async def get_domain(self, name: str) -> DomainRecord | None:
        async with self.db.read() as c:
            row = (await c.execute(select(domains).where(domains.c.name == name))).first()
        return _domain(row) if row else None

    async def list_domains(self) -> list[DomainRecord]:
        async with self.db.read() as c:
            rows = (await c.execute(select(domains).order_by(domains.c.name))).all()
        return [_domain(r) for r in rows]

    async def remove_domain(self, name: str) -> None:
        async with self.db.write() as c:
            res = await c.execute(delete(domains).where(domains.c.name == name))
        if res.rowcount == 0:
            raise NotFound(f"domain {name} does not exist")

    # -- users ---------------------------------------------------------------------
    async def add_user(
        self, address: str, domain_id: int, password_hash: str, quota: int, now: datetime
    ) -> UserRecord:
        try:
            async with self.db.write() as c:
                res = await c.execute(
                    insert(users)
                    .values(
                        address=address,
                        domain_id=domain_id,
                        password_hash=password_hash,
                        quota_bytes=quota,
                        used_bytes=0,
                        disabled=False,
                        created_at=now,
                    )
                    .returning(users.c.id)
                )
                uid = int(res.scalar_one())
                await self._create_default_mailboxes(c, uid, now)
        except IntegrityError as exc:
            raise AlreadyExists(f"user {address} already exists") from exc
        return UserRecord(uid, address, domain_id, password_hash, quota, 0, False)

    async def _create_default_mailboxes(
        self, c: AsyncConnection, user_id: int, now: datetime
    ) -> None:
        # RFC 3501 §2.3.1.1: UIDVALIDITY must change if UIDs are ever reused; a
        # per-creation timestamp (seconds) plus the row id keeps recreated names distinct.
        base = int(now.timestamp())
        await c.execute(
            insert(mailboxes),
            [
                {
                    "user_id": user_id,
                    "name": name,
                    "special_use": role,
                    "uidvalidity": (base + i) % 2**32 or 1,
                    "uidnext": 1,
                    "highestmodseq": 1,
                    "subscribed": True,
                    "created_at": now,
                }
                for i, (name, role) in enumerate(DEFAULT_MAILBOXES)
            ],
        )

    async def get_user(self, address: str) -> UserRecord | None:
        async with self.db.read() as c:
            row = (await c.execute(select(users).where(users.c.address == address))).first()
        return _user(row) if row else None

    async def get_users(self, addresses: Iterable[str]) -> dict[str, UserRecord]:
        wanted = list(set(addresses))
        if not wanted:
            return {}
        async with self.db.read() as c:
            rows = (await c.execute(select(users).where(users.c.address.in_(wanted)))).all()
        return {r.address: _user(r) for r in rows}

    async def list_users(self, domain_id: int | None = None) -> list[UserRecord]:
        q = select(users).order_by(users.c.address)
        if domain_id is not None:
            q = q.where(users.c.domain_id == domain_id)
        async with self.db.read() as c:
            rows = (await c.execute(q)).all()
        return [_user(r) for r in rows]

    async def set_password(self, address: str, password_hash: str) -> None:
        async with self.db.write() as c:
            res = await c.execute(
                update(users).where(users.c.address == address).values(password_hash=password_hash)
            )
        if res.rowcount == 0:
            raise NotFound(f"user {address} does not exist")

    async def set_quota(self, address: str, quota: int) -> None:
        async with self.db.write() as c:
            res = await c.execute(
                update(users).where(users.c.address == address).values(quota_bytes=quota)
            )
        if res.rowcount == 0:
            raise NotFound(f"user {address} does not exist")

    async def remove_user(self, address: str) -> None:
        async with self.db.write() as c:
            res = await c.execute(delete(users).where(users.c.address == address))
        if res.rowcount == 0:
            raise NotFound(f"user {address} does not exist")

    # -- aliases -------------------------------------------------------------------
    async def add_alias(self, source: str, destination: str, domain_id: int, now: datetime) -> None:
        try:
            async with self.db.write() as c:
                await c.execute(
                    insert(aliases).values(
                        source=source, destination=destination, domain_id=domain_id, created_at=now
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExists(f"alias {source} → {destination} already exists") from exc

    async def remove_alias(self, source: str, destination: str | None) -> int:
        q = delete(aliases).where(aliases.c.source == source)
        if destination is not None:
            q = q.where(aliases.c.destination == destination)
        async with self.db.write() as c:
            res = await c.execute(q)
        return int(res.rowcount)

    async def list_aliases(self, domain_id: int | None = None) -> list[AliasRecord]:
        q = select(aliases.c.source, aliases.c.destination).order_by(
            aliases.c.source, aliases.c.destination
        )
        if domain_id is not None:
            q = q.where(aliases.c.domain_id == domain_id)
        async with self.db.read() as c:
            rows = (await c.execute(q)).all()
        return [AliasRecord(r.source, r.destination) for r in rows]

    async def alias_targets(self, sources: Sequence[str]) -> dict[str, list[str]]:
        if not sources:
            return {}
        async with self.db.read() as c:
            rows = (
                await c.execute(
                    select(aliases.c.source, aliases.c.destination)
                    .where(aliases.c.source.in_(list(sources)))
                    .order_by(aliases.c.id)
                )
            ).all()
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r.source, []).append(r.destination)
        return out

    # -- mailboxes -----------------------------------------------------------------
    async def list_mailboxes(self, user_id: int) -> list[MailboxRecord]:
        unseen = func.sum(case((~messages.c.flags.contains("\\Seen", autoescape=True), 1), else_=0))
        stats = (
            select(
                messages.c.mailbox_id,
                func.count().label("n"),
                unseen.label("unseen"),
                func.coalesce(func.sum(messages.c.size), 0).label("size"),
            )
            .group_by(messages.c.mailbox_id)
            .subquery()
        )
        q = (
            select(mailboxes, stats.c.n, stats.c.unseen, stats.c.size)
            .select_from(mailboxes.outerjoin(stats, stats.c.mailbox_id == mailboxes.c.id))
            .where(mailboxes.c.user_id == user_id)
            .order_by(mailboxes.c.id)
        )
        async with self.db.read() as c:
            rows = (await c.execute(q)).all()
        return [
            MailboxRecord(
                r.id,
                r.user_id,
                r.name,
                r.special_use,
                r.uidvalidity,
                r.uidnext,
                r.highestmodseq,
                r.subscribed,
                int(r.n or 0),
                int(r.unseen or 0),
                int(r.size or 0),
            )
            for r in rows
        ]

    async def get_mailbox(self, user_id: int, name: str) -> MailboxRecord | None:
        # RFC 3501 §5.1: INBOX is case-insensitive; other names are exact.
        wanted = "INBOX" if name.upper() == "INBOX" else name
        for mb in await self.list_mailboxes(user_id):
            if mb.name == wanted:
                return mb
        return None

    # -- messages ------------------------------------------------------------------
    async def deliver(self, message: NewMessage, targets: Sequence[Delivery]) -> list[Delivered]:
        """Insert one message for every target in ONE transaction (all or nothing).

        Raises QuotaExceeded (and stores nothing) if any target with enforce_quota
        would go over its quota. The caller decides which targets enforce it.
        """
        out: list[Delivered] = []
        async with self.db.write() as c:
            for t in targets:
                await self._charge_quota(c, t, message.size)
                mailbox_id = await self._resolve_mailbox(c, t.user_id, t.mailbox)
                uid, modseq = await self._allocate_uid(c, mailbox_id)
                await c.execute(
                    insert(messages).values(_message_row(message, t, mailbox_id, uid, modseq))
                )
                out.append(Delivered(t.user_id, mailbox_id, uid))
        return out

    async def _charge_quota(self, c: AsyncConnection, t: Delivery, size: int) -> None:
        q = (
            update(users)
            .where(users.c.id == t.user_id)
            .values(used_bytes=users.c.used_bytes + size)
        )
        if t.enforce_quota:
            q = q.where(
                or_(users.c.quota_bytes == 0, users.c.used_bytes + size <= users.c.quota_bytes)
            )
        res = await c.execute(q)
        if res.rowcount == 0:
            raise QuotaExceeded(f"mailbox of {t.rcpt_to} is over quota")

    async def _resolve_mailbox(self, c: AsyncConnection, user_id: int, name: str) -> int:
        cond = (
            mailboxes.c.special_use == name if name.startswith("\\") else mailboxes.c.name == name
        )
        row = (
            await c.execute(
                select(mailboxes.c.id).where(and_(mailboxes.c.user_id == user_id, cond))
            )
        ).first()
        if row is None and name != "INBOX":
            return await self._resolve_mailbox(c, user_id, "INBOX")
        if row is None:
            raise NotFound(f"user {user_id} has no INBOX")
        return int(row.id)

    async def _allocate_uid(self, c: AsyncConnection, mailbox_id: int) -> tuple[int, int]:
        row = (
            await c.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id)
                .values(
                    uidnext=mailboxes.c.uidnext + 1, highestmodseq=mailboxes.c.highestmodseq + 1
                )
                .returning(mailboxes.c.uidnext, mailboxes.c.highestmodseq)
            )
        ).one()
        return int(row.uidnext) - 1, int(row.highestmodseq)

    async def list_messages(
        self, mailbox_id: int, limit: int = 1000, offset: int = 0
    ) -> list[MessageRecord]:
        q = (
            select(messages)
            .where(messages.c.mailbox_id == mailbox_id)
            .order_by(messages.c.uid)
            .limit(limit)
            .offset(offset)
        )
        async with self.db.read() as c:
            rows = (await c.execute(q)).all()
        return [_message(r) for r in rows]

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRecord | None:
        q = select(messages).where(and_(messages.c.mailbox_id == mailbox_id, messages.c.uid == uid))
        async with self.db.read() as c:
            row = (await c.execute(q)).first()
        return _message(row) if row else None

    async def count_messages(self) -> int:
        async with self.db.read() as c:
            return int((await c.execute(select(func.count()).select_from(messages))).scalar_one())


def _message_row(
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


def _message(r: Row[Any]) -> MessageRecord:
    return MessageRecord(
        id=r.id,
        mailbox_id=r.mailbox_id,
        uid=r.uid,
        modseq=r.modseq,
        blob=r.blob,
        size=r.size,
        internal_date=_aware(r.internal_date) or r.internal_date,
        flags=tuple(r.flags.split()),
        mail_from=r.mail_from,
        rcpt_to=r.rcpt_to,
        headers=HeaderSummary(
            r.message_id,
            r.subject,
            r.from_addr,
            r.to_addr,
            r.cc_addr,
            r.in_reply_to,
            _aware(r.date_header),
        ),
        auth_results=r.auth_results,
    )
