"""Keeps the IMAP search index filled: decoded text of every stored message body.

Messages are indexed in the background after they are filed (delivery, APPEND), and any
that are still missing are indexed before a text search runs, so SEARCH never misses a
message and never reads message files itself. Text extraction runs in a worker thread.
The index is derived data: losing it (or a crash mid-way) only costs re-indexing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from mailwarden.imap.searchtext import extract
from mailwarden.store.blobs import BlobStore
from mailwarden.store.search_sql import SearchIndexStore

log = logging.getLogger("mailwarden.search")
BATCH = 100
COALESCE = 1.0  # seconds new messages wait to be indexed together


class SearchIndexer:
    def __init__(self, store: SearchIndexStore, blobs: BlobStore, max_body_chars: int) -> None:
        self.store = store
        self.blobs = blobs
        self.max_body_chars = max_body_chars
        self._pending: dict[str, None] = {}
        self._complete: dict[int, int] = {}  # mailbox id -> mod-sequence it was complete at
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def schedule(self, blobs: Iterable[str]) -> None:
        """Index these blobs soon, in the background."""
        for key in blobs:
            self._pending[key] = None
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def ensure(self, mailbox_id: int, modseq: int) -> None:
        """Index every message of the mailbox that is not indexed yet.

        ``modseq`` is the mailbox's HIGHESTMODSEQ as the caller knows it: a new message
        always raises it, so once the mailbox was complete at that value there is
        nothing to look for.
        """
        if self._complete.get(mailbox_id, -1) >= modseq:
            return
        while True:
            keys = await self.store.unindexed(mailbox_id, BATCH)
            if not keys:
                break
            await self._index(keys)
        self._complete[mailbox_id] = modseq

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        # Let a burst of new mail (a client uploading a folder, a busy MX) gather first:
        # one FTS insert of 100 messages costs far less than 100 inserts of one.
        await asyncio.sleep(COALESCE)
        while self._pending:
            keys = list(self._pending)[:BATCH]
            for key in keys:
                del self._pending[key]
            try:
                await self._index(keys)
            except Exception:  # the next search indexes whatever this missed
                log.exception("indexing %d messages failed", len(keys))

    async def _index(self, keys: list[str]) -> None:
        async with self._lock:  # one batch at a time: extraction is CPU work
            rows = await asyncio.to_thread(self._extract_all, keys)
            if rows:
                await self.store.add_search_text(rows)

    def _extract_all(self, keys: list[str]) -> list[tuple[str, str, str]]:
        rows = []
        for key in keys:
            try:
                raw = self.blobs.path(key).read_bytes()
            except OSError as exc:  # a missing body is indexed as empty, not retried forever
                log.warning("search index: cannot read blob %s: %s", key, exc)
                raw = b""
            headers, body = extract(raw, max_body_chars=self.max_body_chars)
            rows.append((key, headers, body))
        return rows
