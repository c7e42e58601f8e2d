"""The database handle: SQLite (default) or PostgreSQL behind one call style.

Store code is written once, as plain functions over a SQLAlchemy ``Connection``, and run
through ``Database.read(fn)`` / ``Database.write(fn)``:

* SQLite: the whole function runs in a database thread with the stdlib driver, so one
  operation costs one thread hop (an async driver pays a hop per cursor call). Reads use a
  small pool of threads (WAL lets them run beside the writer); every write runs on the one
  writer thread inside ``BEGIN IMMEDIATE``, which is SQLite's single-writer rule made
  explicit. ``synchronous=FULL`` fsyncs the WAL at every commit.
* PostgreSQL: the same function runs on asyncpg through ``AsyncConnection.run_sync``.

Either way a ``write`` has committed when it returns, before any reply is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
READ_THREADS = 4


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'mailwarden.db'}"


def _sqlite_engine(url: str, synchronous: str, *, writer: bool) -> Engine:
    sync_url = "sqlite://" + url.split("://", 1)[1]  # the stdlib driver, in our threads
    engine = create_engine(
        sync_url, pool_size=1 if writer else READ_THREADS, max_overflow=0 if writer else 4
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        # The writer waits for the lock itself (see _begin); readers rarely wait at all.
        cur.execute(f"PRAGMA busy_timeout={0 if writer else BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front, so a read-then-write transaction can never
        # fail to upgrade; readers get a plain (deferred) snapshot.
        if writer:
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


BUSY_TIMEOUT_MS = 10_000
LOCK_POLL = 0.0005  # seconds between tries for the write lock


def _begin_immediate(conn: Connection) -> None:
    """Take SQLite's write lock, waiting up to BUSY_TIMEOUT_MS for another process.

    SQLite's own busy handler backs off to 10, 25, 50, 100 ms sleeps, so with two worker
    processes writing all the time a waiting writer idles long after the lock is free.
    Polling every half millisecond keeps the hand-over short; WAL mode means only the
    write lock is ever contended.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(LOCK_POLL)


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._async: AsyncEngine | None = None
        if self.is_sqlite:
            self._reader = _sqlite_engine(url, sqlite_synchronous, writer=False)
            self._writer = _sqlite_engine(url, sqlite_synchronous, writer=True)
            self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mw-db-read")
            self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="mw-db-write")
        else:
            self._async = create_async_engine(
                url, pool_size=10, max_overflow=10, pool_pre_ping=True
            )

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a read-only snapshot."""
        if self._async is not None:
            async with self._async.connect() as conn:
                return await conn.run_sync(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._run, self._reader, fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a transaction that is committed when this returns."""
        if self._async is not None:
            async with self._async.begin() as conn:
                return await conn.run_sync(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_pool, self._run, self._writer, fn)

    @staticmethod
    def _run(engine: Engine, fn: Callable[[Connection], T]) -> T:
        with engine.begin() as conn:
            return fn(conn)

    async def migrate(self) -> None:
        """Apply Alembic migrations up to head (run at every start)."""
        await self.write(_upgrade)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.dispose()
            return
        self._read_pool.shutdown(wait=True)
        self._write_pool.shutdown(wait=True)
        self._reader.dispose()
        self._writer.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
