"""The operator's view of the outbound queue and of delivery events (CLI, later the web API).

Changes take effect in the running server at its next look at the queue
(``delivery.poll_interval``): the runner reads state from the store, not from memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from mailwarden.core.clock import Clock
from mailwarden.core.errors import NotFound
from mailwarden.core.events import DeliveryEvent
from mailwarden.store.events_sql import EventStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.records import QueuedMessage

log = logging.getLogger("mailwarden.queue")


class QueueService:
    def __init__(self, queue: QueueStore, events: EventStore, clock: Clock) -> None:
        self.queue = queue
        self.events_store = events
        self.clock = clock

    async def list_messages(
        self, held: bool | None = None, limit: int = 1000
    ) -> list[QueuedMessage]:
        return await self.queue.list_messages(held=held, limit=limit)

    async def show(self, queue_id: str) -> QueuedMessage:
        msg = await self.queue.get(queue_id)
        if msg is None:
            raise NotFound(f"no message {queue_id} in the queue")
        return msg

    async def counts(self) -> dict[str, int]:
        return await self.queue.counts()

    async def retry(self, queue_id: str | None) -> int:
        """Make deferred recipients due now (one message, or all: `flush`)."""
        if queue_id is not None:
            await self.show(queue_id)
        n = await self.queue.retry_now(queue_id, self.clock.now())
        log.info("operator: retry %s now (%d recipients)", queue_id or "all", n)
        return n

    async def hold(self, queue_id: str | None, held: bool = True) -> int:
        if queue_id is not None:
            await self.show(queue_id)
        n = await self.queue.set_held(queue_id, held)
        log.info("operator: %s %s", "hold" if held else "release", queue_id or "all")
        return n

    async def delete(self, queue_id: str) -> QueuedMessage:
        msg = await self.queue.delete(queue_id)
        if msg is None:
            raise NotFound(f"no message {queue_id} in the queue")
        log.warning("operator: deleted %s from the queue (no bounce sent)", queue_id)
        return msg

    async def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        filters: Mapping[str, str] | None = None,
        limit: int = 1000,
    ) -> list[DeliveryEvent]:
        return await self.events_store.query(since=since, until=until, filters=filters, limit=limit)
