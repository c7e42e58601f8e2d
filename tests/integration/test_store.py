"""The store on SQLite and PostgreSQL: migrations, UIDs, quotas, atomic delivery, blobs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailwarden.core.errors import AlreadyExists, QuotaExceeded
from mailwarden.store.blobs import BlobStore
from mailwarden.store.db import Database
from mailwarden.store.records import Delivery, HeaderSummary, NewMessage
from mailwarden.store.sql import SqlStore
from mailwarden.store.tables import metadata
from mwserver import postgres_database

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    db = Database(db_url)
    await db.migrate()
    yield SqlStore(db)
    await db.close()


def msg(blob: str = "a" * 64, size: int = 100) -> NewMessage:
    return NewMessage(blob=blob, size=size, internal_date=NOW, headers=HeaderSummary(subject="s"))


async def test_migrations_match_tables_and_rerun(db_url: str) -> None:
    db = Database(db_url)
    await db.migrate()
    await db.migrate()  # idempotent: every start runs it

    def outside_metadata(obj: object, name: str | None, kind: str, *_: object) -> bool:
        # The search index's FTS5 table (and its shadow tables) and the pg_trgm GIN
        # indexes are made with raw DDL in migration 0003: SQLAlchemy cannot describe them.
        return not (name or "").startswith("search_fts") and not (name or "").endswith("_trgm")

    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"include_object": outside_metadata})  # type: ignore[arg-type]
        return list(compare_metadata(ctx, metadata))

    assert await db.read(diff) == []
    await db.close()


async def test_uids_modseq_and_counts(store: SqlStore) -> None:
    d = await store.add_domain("example.test", NOW)
    u = await store.add_user("alice@example.test", d.id, "h", 0, NOW)
    for _ in range(3):
        await store.deliver(msg(), [Delivery(u.id, "alice@example.test", "INBOX")])
    (junk,) = await store.deliver(msg(), [Delivery(u.id, "alice@example.test", "\\Junk")])
    boxes = {m.name: m for m in await store.list_mailboxes(u.id)}
    assert boxes["INBOX"].messages == 3 and boxes["INBOX"].uidnext == 4
    assert boxes["INBOX"].highestmodseq == 4
    assert boxes["Junk"].messages == 1 and junk.uid == 1
    assert boxes["INBOX"].uidvalidity != 0
    listed = await store.list_messages(boxes["INBOX"].id)
    assert [m.uid for m in listed] == [1, 2, 3]
    assert listed[0].internal_date == NOW
    assert (await store.get_user("alice@example.test")).used_bytes == 400  # type: ignore[union-attr]
    with pytest.raises(AlreadyExists):
        await store.add_user("alice@example.test", d.id, "h", 0, NOW)


async def test_concurrent_deliveries_get_distinct_uids(store: SqlStore) -> None:
    d = await store.add_domain("example.test", NOW)
    u = await store.add_user("alice@example.test", d.id, "h", 0, NOW)
    results = await asyncio.gather(
        *(store.deliver(msg(), [Delivery(u.id, "a", "INBOX")]) for _ in range(40))
    )
    uids = sorted(r[0].uid for r in results)
    assert uids == list(range(1, 41))


async def test_quota_failure_is_all_or_nothing(store: SqlStore) -> None:
    d = await store.add_domain("example.test", NOW)
    a = await store.add_user("a@example.test", d.id, "h", 0, NOW)
    b = await store.add_user("b@example.test", d.id, "h", 150, NOW)
    await store.deliver(msg(), [Delivery(b.id, "b", "INBOX")])
    with pytest.raises(QuotaExceeded):
        await store.deliver(msg(), [Delivery(a.id, "a", "INBOX"), Delivery(b.id, "b", "INBOX")])
    # nothing of the failed transaction stayed: not a's copy, not the usage
    assert (await store.list_mailboxes(a.id))[0].messages == 0
    assert (await store.get_user("a@example.test")).used_bytes == 0  # type: ignore[union-attr]
    # without enforcement (multi-recipient overshoot) it goes through
    await store.deliver(msg(), [Delivery(b.id, "b", "INBOX", enforce_quota=False)])
    assert (await store.get_user("b@example.test")).used_bytes == 200  # type: ignore[union-attr]


async def test_domain_removal_cascades(store: SqlStore) -> None:
    d = await store.add_domain("example.test", NOW)
    await store.add_user("a@example.test", d.id, "h", 0, NOW)
    await store.add_alias("@example.test", "a@example.test", d.id, NOW)
    await store.remove_domain("example.test")
    assert await store.get_user("a@example.test") is None
    assert await store.list_aliases() == []


async def test_blob_store_is_content_addressed_and_durable(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    key = await blobs.put(b"hello\r\n")
    assert key == BlobStore.key_for(b"hello\r\n")
    assert await blobs.put(b"hello\r\n") == key
    assert await blobs.get(key) == b"hello\r\n"
    path = blobs.path(key)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == [key]  # no temp files left
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")
    assert os.path.commonpath([path, tmp_path]) == str(tmp_path)
