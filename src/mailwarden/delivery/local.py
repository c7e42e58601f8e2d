"""Local delivery: message bytes → blob store → one transaction of mailbox inserts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailwarden.core.clock import Clock
from mailwarden.core.errors import QuotaExceeded
from mailwarden.core.headers import read_headers
from mailwarden.delivery.headers import summarize
from mailwarden.store.blobs import BlobStore
from mailwarden.store.ports import Store
from mailwarden.store.records import Delivered, Delivery, NewMessage, UserRecord


@dataclass(frozen=True, slots=True)
class LocalTarget:
    rcpt_to: str
    user: UserRecord


def fits_quota(user: UserRecord, size: int) -> bool:
    return user.quota_bytes == 0 or user.used_bytes + size <= user.quota_bytes


# Called after every committed local delivery: (where it went, the body's blob key).
FiledHook = Callable[[list[Delivered], str], None]


class LocalDelivery:
    def __init__(
        self, store: Store, blobs: BlobStore, clock: Clock, on_filed: FiledHook | None = None
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.on_filed = on_filed  # app.py: notify IMAP sessions, schedule search indexing

    async def deliver(
        self,
        raw: bytes,
        *,
        mail_from: str,
        targets: Sequence[LocalTarget],
        mailbox: str = "INBOX",
        auth_results: str = "",
        flags: tuple[str, ...] = (),
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> list[Delivered]:
        """Store ``raw`` once and file it for every distinct user; durable on return.

        Quota: a single recipient over quota raises QuotaExceeded (the SMTP layer answers
        452 4.2.2 and nothing is stored). With several recipients the message is refused
        only if every one of them is over quota; otherwise all get it, and those over
        quota go over by this one message, because one DATA reply cannot differ per
        recipient and no acknowledged mail may be dropped.
        """
        unique: dict[int, LocalTarget] = {}
        for t in targets:
            unique.setdefault(t.user.id, t)
        size = len(raw)
        enforce = len(unique) == 1
        if not enforce and not any(fits_quota(t.user, size) for t in unique.values()):
            raise QuotaExceeded("every recipient is over quota")
        key = await self.blobs.put(raw)
        message = NewMessage(
            blob=key,
            size=size,
            internal_date=self.clock.now(),
            headers=summarize(read_headers(raw) if headers is None else headers),
            mail_from=mail_from,
            auth_results=auth_results,
            flags=flags,
        )
        deliveries = [Delivery(t.user.id, t.rcpt_to, mailbox, enforce) for t in unique.values()]
        filed = await self.store.deliver(message, deliveries)
        if self.on_filed is not None:
            self.on_filed(filed, key)
        return filed
