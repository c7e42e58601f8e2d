"""The one path by which mailbox changes reach IMAP sessions (IDLE, NOOP, any command).

Whoever changes a mailbox (local delivery, an IMAP session, the CLI or the web API
through services) calls :meth:`ChangeNotifier.publish` with the mailbox ids after the
change has committed. A notification carries no data, only "mailbox N changed": the
session then reads what changed after the mod-sequence it has seen (the store is the
truth, see ``store/messages_sql.py``), so notifications may be merged or repeated
without losing anything.

Implementations:

* :class:`LocalNotifier`: in-process fan-out (one asyncio loop, one process).
* :class:`PollingNotifier`: wraps a LocalNotifier and also polls the watched mailboxes'
  HIGHESTMODSEQ, for changes committed by other processes (worker processes sharing
  SQLite, the CLI). A PostgreSQL LISTEN/NOTIFY or Redis implementation for several
  nodes only has to provide the same two methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

log = logging.getLogger("mailwarden.notify")


class Watch:
    """A subscription to one mailbox: ``changed`` is set whenever it may have changed."""

    def __init__(self, mailbox_id: int, on_close: Callable[[Watch], None]) -> None:
        self.mailbox_id = mailbox_id
        self.changed = asyncio.Event()
        self._on_close = on_close

    async def wait(self) -> None:
        """Wait until a change is signalled (``changed`` stays set until cleared)."""
        await self.changed.wait()

    def close(self) -> None:
        self._on_close(self)


class ChangeNotifier(Protocol):
    def publish(self, mailbox_ids: Iterable[int]) -> None:
        """Mailboxes whose contents or flags changed (after the commit)."""

    def watch(self, mailbox_id: int) -> Watch:
        """Start watching a mailbox; call ``Watch.close()`` when done."""


class LocalNotifier:
    """In-process fan-out of change signals to the sessions watching each mailbox."""

    def __init__(self) -> None:
        self._watches: dict[int, set[Watch]] = {}

    def publish(self, mailbox_ids: Iterable[int]) -> None:
        for mailbox_id in set(mailbox_ids):
            for w in self._watches.get(mailbox_id, ()):
                w.changed.set()

    def watch(self, mailbox_id: int) -> Watch:
        w = Watch(mailbox_id, self._unwatch)
        self._watches.setdefault(mailbox_id, set()).add(w)
        return w

    def watched(self) -> list[int]:
        return list(self._watches)

    def _unwatch(self, w: Watch) -> None:
        group = self._watches.get(w.mailbox_id)
        if group is not None:
            group.discard(w)
            if not group:
                del self._watches[w.mailbox_id]


# mailbox ids -> {mailbox id: highest mod-sequence}
ModseqReader = Callable[[list[int]], Awaitable[dict[int, int]]]


class PollingNotifier:
    """LocalNotifier plus a poll of HIGHESTMODSEQ for changes made by other processes."""

    def __init__(self, read_modseqs: ModseqReader, interval: float) -> None:
        self.local = LocalNotifier()
        self._read = read_modseqs
        self.interval = interval
        self._seen: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def publish(self, mailbox_ids: Iterable[int]) -> None:
        self.local.publish(mailbox_ids)

    def watch(self, mailbox_id: int) -> Watch:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        return self.local.watch(mailbox_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            ids = self.local.watched()
            if not ids:
                self._seen.clear()
                continue
            try:
                current = await self._read(ids)
            except Exception:  # a database hiccup must not end notifications for good
                log.exception("polling mailbox changes failed")
                continue
            # A mailbox polled for the first time counts as changed: the watcher may have
            # missed a change made between opening it and this poll (one spare re-read).
            changed = [i for i, m in current.items() if self._seen.get(i) != m]
            self._seen = current
            if changed:
                self.local.publish(changed)
