"""SQLAlchemy Core implementation of the store. Same code on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Executable, Row, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailwarden.core.errors import AlreadyExists, NotFound
from mailwarden.store.db import Database
from mailwarden.store.mailbox_rows import insert_mailboxes, mailbox_record, mailbox_stats_query
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
from mailwarden.store.writer import DeliveryWriter

# RFC 6154 special-use mailboxes created for every account.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def _domain(r: Row[Any]) -> DomainRecord:
    return DomainRecord(r.id, r.name, aware(r.created_at) or r.created_at)


def _user(r: Row[Any]) -> UserRecord:
    return UserRecord(
        r.id,
        r.address,
        r.domain_id,
        r.password_hash,
        r.quota_bytes,
        r.used_bytes,
        r.disabled,
        r.save_sent,
    )


class SqlStore:
    """All persistent state except message bytes (see BlobStore).

    Each method runs one function over a Connection through Database.read/write, so the
    same code serves SQLite (in a database thread) and PostgreSQL (asyncpg).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer = DeliveryWriter(db)

    async def _all(self, q: Executable) -> Sequence[Row[Any]]:
        return await self.db.read(lambda c: c.execute(q).all())

    async def _first(self, q: Executable) -> Row[Any] | None:
        return await self.db.read(lambda c: c.execute(q).first())

    async def _change(self, stmt: Executable) -> int:
        """Run one INSERT/UPDATE/DELETE; returns the number of rows it touched."""
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    # -- domains -------------------------------------------------------------------
    async def add_domain(self, name: str, now: datetime) -> DomainRecord:
        stmt = insert(domains).values(name=name, created_at=now).returning(domains.c.id)
        try:
            new_id = await self.db.write(lambda c: int(c.execute(stmt).scalar_one()))
        except IntegrityError as exc:
            raise AlreadyExists(f"domain {name} already exists") from exc
        return DomainRecord(new_id, name, now)

    async def get_domain(self, name: str) -> DomainRecord | None:
        row = await self._first(select(domains).where(domains.c.name == name))
        return _domain(row) if row else None

    async def list_domains(self) -> list[DomainRecord]:
        return [_domain(r) for r in await self._all(select(domains).order_by(domains.c.name))]

    async def remove_domain(self, name: str) -> None:
        if await self._change(delete(domains).where(domains.c.name == name)) == 0:
            raise NotFound(f"domain {name} does not exist")

    # -- users ---------------------------------------------------------------------
    async def add_user(
        self, address: str, domain_id: int, password_hash: str, quota: int, now: datetime
    ) -> UserRecord:
        def add(c: Connection) -> int:
            new_id = c.execute(
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
            ).scalar_one()
            _create_default_mailboxes(c, int(new_id), now)
            return int(new_id)

        try:
            uid = await self.db.write(add)
        except IntegrityError as exc:
            raise AlreadyExists(f"user {address} already exists") from exc
        return UserRecord(uid, address, domain_id, password_hash, quota, 0, False)

    async def get_user(self, address: str) -> UserRecord | None:
        row = await self._first(select(users).where(users.c.address == address))
        return _user(row) if row else None

    async def get_users(self, addresses: Iterable[str]) -> dict[str, UserRecord]:
        wanted = list(set(addresses))
        if not wanted:
            return {}
        rows = await self._all(select(users).where(users.c.address.in_(wanted)))
        return {r.address: _user(r) for r in rows}

    async def list_users(self, domain_id: int | None = None) -> list[UserRecord]:
        q = select(users).order_by(users.c.address)
        if domain_id is not None:
            q = q.where(users.c.domain_id == domain_id)
        return [_user(r) for r in await self._all(q)]

    async def set_password(self, address: str, password_hash: str) -> None:
        stmt = update(users).where(users.c.address == address).values(password_hash=password_hash)
        if await self._change(stmt) == 0:
            raise NotFound(f"user {address} does not exist")

    async def set_quota(self, address: str, quota: int) -> None:
        stmt = update(users).where(users.c.address == address).values(quota_bytes=quota)
        if await self._change(stmt) == 0:
            raise NotFound(f"user {address} does not exist")

    async def set_save_sent(self, address: str, on: bool) -> None:
        stmt = update(users).where(users.c.address == address).values(save_sent=on)
        if await self._change(stmt) == 0:
            raise NotFound(f"user {address} does not exist")

    async def remove_user(self, address: str) -> None:
        if await self._change(delete(users).where(users.c.address == address)) == 0:
            raise NotFound(f"user {address} does not exist")

    # -- aliases -------------------------------------------------------------------
    async def add_alias(self, source: str, destination: str, domain_id: int, now: datetime) -> None:
        stmt = insert(aliases).values(
            source=source, destination=destination, domain_id=domain_id, created_at=now
        )
        try:
            await self._change(stmt)
        except IntegrityError as exc:
            raise AlreadyExists(f"alias {source} → {destination} already exists") from exc

    async def remove_alias(self, source: str, destination: str | None) -> int:
        q = delete(aliases).where(aliases.c.source == source)
        if destination is not None:
            q = q.where(aliases.c.destination == destination)
        return await self._change(q)

    async def list_aliases(self, domain_id: int | None = None) -> list[AliasRecord]:
        q = select(aliases.c.source, aliases.c.destination).order_by(
            aliases.c.source, aliases.c.destination
        )
        if domain_id is not None:
            q = q.where(aliases.c.domain_id == domain_id)
        return [AliasRecord(r.source, r.destination) for r in await self._all(q)]

    async def alias_targets(self, sources: Sequence[str]) -> dict[str, list[str]]:
        if not sources:
            return {}
        rows = await self._all(
            select(aliases.c.source, aliases.c.destination)
            .where(aliases.c.source.in_(list(sources)))
            .order_by(aliases.c.id)
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r.source, []).append(r.destination)
        return out

    # -- mailboxes -----------------------------------------------------------------
    async def list_mailboxes(self, user_id: int) -> list[MailboxRecord]:
        return [mailbox_record(r) for r in await self._all(_mailbox_query(user_id))]

    async def get_mailbox(self, user_id: int, name: str) -> MailboxRecord | None:
        # RFC 3501 §5.1: INBOX is case-insensitive; other names are exact.
        wanted = "INBOX" if name.upper() == "INBOX" else name
        where = and_(mailboxes.c.user_id == user_id, mailboxes.c.name == wanted)
        row = await self._first(mailbox_stats_query(where))
        return mailbox_record(row) if row else None

    # -- messages ------------------------------------------------------------------
    async def deliver(self, message: NewMessage, targets: Sequence[Delivery]) -> list[Delivered]:
        """Insert one message for every target, all or nothing, committed on return.

        Raises QuotaExceeded (and stores nothing) if a target with enforce_quota would go
        over its quota. Concurrent calls share a transaction (see writer.py).
        """
        return await self._writer.deliver(message, targets)

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
        return [_message(r) for r in await self._all(q)]

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRecord | None:
        q = select(messages).where(and_(messages.c.mailbox_id == mailbox_id, messages.c.uid == uid))
        row = await self._first(q)
        return _message(row) if row else None


def _create_default_mailboxes(c: Connection, user_id: int, now: datetime) -> None:
    insert_mailboxes(c, user_id, DEFAULT_MAILBOXES, now)


def _mailbox_query(user_id: int) -> Any:
    return mailbox_stats_query(mailboxes.c.user_id == user_id)


def _message(r: Row[Any]) -> MessageRecord:
    return MessageRecord(
        id=r.id,
        mailbox_id=r.mailbox_id,
        uid=r.uid,
        modseq=r.modseq,
        blob=r.blob,
        size=r.size,
        internal_date=aware(r.internal_date) or r.internal_date,
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
            aware(r.date_header),
        ),
        auth_results=r.auth_results,
    )
