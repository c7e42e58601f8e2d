"""Group commit: concurrent writes share one transaction and one fsync.

Every acknowledged message must be committed before its reply, and SQLite admits one
writer at a time, so committing each write alone makes the commit the bottleneck. Writes
queue up while a transaction is running, and the next transaction takes all of them: the
cost of BEGIN/COMMIT (and the WAL fsync) is paid once per batch. A batch that fails as a
whole is retried one write at a time, so one bad write only fails itself. Expected
refusals (over quota, ...) should be *returned* as exception values by the write function
rather than raised, so they do not cost the whole batch a retry; ``run`` raises them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.store.batch")
T = TypeVar("T")
MAX_BATCH = 64


@dataclass
class _Pending(Generic[T]):
    fn: Callable[[Connection], T | Exception]
    future: asyncio.Future[T]


class GroupCommit:
    def __init__(self, db: Database, name: str, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.name = name
        self.max_batch = max_batch
        self._pending: list[_Pending[Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[[Connection], T | Exception]) -> T:
        """Run ``fn`` inside a shared write transaction; returns once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(fn, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._commit(batch)
        except BaseException as exc:  # never leave a caller waiting forever
            for item in self._pending:
                _settle(item, exc)
            self._pending.clear()
            raise

    async def _commit(self, batch: list[_Pending[Any]]) -> None:
        try:
            outcomes = await self.db.write(lambda c: [item.fn(c) for item in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning(
                "%s: batch of %d writes failed (%s); retrying one by one",
                self.name,
                len(batch),
                exc,
            )
            for item in batch:
                await self._commit([item])
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item, outcome)


def _settle(item: _Pending[Any] | asyncio.Future[Any], outcome: object) -> None:
    future = item if isinstance(item, asyncio.Future) else item.future
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class MergedWrites(Generic[T]):
    """Items added while a write runs are merged into *one* ``write(conn, items)`` call.

    Where GroupCommit shares a transaction but still runs each caller's statements,
    this runs one set of statements for the whole batch (executemany), for writes that
    are plain lists of rows, such as delivery outcomes. If a merged write fails, every
    caller in it gets the error.
    """

    def __init__(
        self,
        db: Database,
        name: str,
        write: Callable[..., Any],  # write(conn, items=[...])
        max_items: int = 512,
    ) -> None:
        self.db = db
        self.name = name
        self.write = write
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> Any:
        """Write ``item`` (with whatever else is waiting); returns once committed, with
        what ``write`` returned for the whole merged batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_items]
            del self._pending[: self.max_items]
            await self._write(batch)

    async def _write(self, batch: list[tuple[T, asyncio.Future[Any]]]) -> None:
        items = [item for item, _f in batch]
        try:
            result = await self.db.write(functools.partial(self.write, items=items))
        except Exception as exc:
            if len(batch) > 1:  # one bad item must not fail the others: one by one
                log.warning(
                    "%s: merged write of %d failed (%s); one by one", self.name, len(batch), exc
                )
                for one in batch:
                    await self._write([one])
                return
            _settle(batch[0][1], exc)
            return
        for _item, f in batch:
            _settle(f, result)
