"""Group commit: concurrent writes share one transaction and one fsync.

Every acknowledged message must be committed before its reply, and SQLite admits one
writer at a time, so committing each write alone makes the commit the bottleneck. Writes
queue up while a transaction is running, and the next transaction takes all of them: the
cost of BEGIN/COMMIT (and the WAL fsync) is paid once per batch. A batch that fails as a
whole is retried one write at a time, so one bad write only fails itself. Expected
refusals (over quota, ...) should be *returned* as exception values by the write function
rather than raised, so they do not cost the whole batch a retry; ``run`` raises them.

Two ways to use the batch: ``GroupCommit.run(fn)`` runs each caller's own function in
the shared transaction; ``WriteBatcher(..., merged(write))`` runs one ``write(conn,
items)`` for the whole batch (one executemany instead of a statement per caller).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.store.batch")
I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")
T = TypeVar("T")
MAX_BATCH = 64

# write(conn, items) -> one result per item; an Exception *value* fails only its caller.
BatchWrite = Callable[[Connection, list[I]], list[Any]]


class WriteBatcher(Generic[I]):
    """Items added while a write runs go into the next write, together."""

    def __init__(
        self, db: Database, name: str, write: BatchWrite[I], max_items: int = MAX_BATCH
    ) -> None:
        self.db = db
        self.name = name
        self.write = write
        self.max_items = max_items
        self._pending: list[tuple[I, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: I) -> Any:
        """Write ``item`` with whatever else is waiting; returns its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_items]
                del self._pending[: self.max_items]
                await self._commit(batch)
        except BaseException as exc:  # never leave a caller waiting forever
            for _item, future in self._pending:
                _settle(future, exc)
            self._pending.clear()
            raise

    async def _commit(self, batch: list[tuple[I, asyncio.Future[Any]]]) -> None:
        items = [item for item, _f in batch]
        try:
            outcomes = await self.db.write(lambda c: self.write(c, items))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning(
                "%s: batch of %d writes failed (%s); retrying one by one",
                self.name,
                len(batch),
                exc,
            )
            for one in batch:
                await self._commit([one])
            return
        for (_item, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)


def merged(write: Callable[[Connection, list[I]], R]) -> BatchWrite[I]:
    """A write done once for the whole batch; every caller gets its one result."""
    return lambda c, items: [write(c, items)] * len(items)


class GroupCommit:
    """Each caller's own function, run in the shared transaction."""

    def __init__(self, db: Database, name: str, max_batch: int = MAX_BATCH) -> None:
        self._batch: WriteBatcher[Callable[[Connection], Any]] = WriteBatcher(
            db, name, _run_each, max_batch
        )

    async def run(self, fn: Callable[[Connection], T | Exception]) -> T:
        """Run ``fn`` inside a shared write transaction; returns once committed."""
        result: T = await self._batch.add(fn)
        return result


def _run_each(c: Connection, fns: list[Callable[[Connection], Any]]) -> list[Any]:
    return [fn(c) for fn in fns]


def _settle(future: asyncio.Future[Any], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
