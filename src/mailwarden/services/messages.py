"""Messages of an account's mailboxes, for IMAP now and the web API later.

Each change commits first and is then published on the change notifier, so every
session watching the mailbox (and the one making the change) picks it up from the
store. Bodies are written to the blob store (fsync'd) before the database commit that
makes them visible, as for delivered mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from mailwarden.core.clock import Clock
from mailwarden.core.headers import read_headers
from mailwarden.delivery.headers import summarize
from mailwarden.services.folders import lineage, validate
from mailwarden.services.notify import ChangeNotifier
from mailwarden.services.search_index import SearchIndexer
from mailwarden.store.blobs import BlobStore
from mailwarden.store.folders_sql import FolderStore
from mailwarden.store.messages_sql import MessageStore, SortRow, StoreMode
from mailwarden.store.records import (
    BodyRef,
    FlagChange,
    MailboxChanges,
    MailboxRecord,
    MailboxView,
    NewMessage,
)
from mailwarden.store.search_sql import SearchIndexStore


class MessageService:
    def __init__(
        self,
        store: MessageStore,
        folders: FolderStore,
        index_store: SearchIndexStore,
        indexer: SearchIndexer,
        blobs: BlobStore,
        notifier: ChangeNotifier,
        clock: Clock,
    ) -> None:
        self.store = store
        self.folders = folders
        self.index_store = index_store
        self.indexer = indexer
        self.blobs = blobs
        self.notifier = notifier
        self.clock = clock

    # -- the selected mailbox ----------------------------------------------------------
    async def open(self, mailbox_id: int, *, read_only: bool) -> MailboxView:
        """The mailbox and its messages; a read-write open claims the \\Recent ones."""
        view = await self.store.open(mailbox_id)
        mb = view.mailbox
        if read_only or mb.first_recent_uid >= mb.uidnext:
            return view
        recent = await self.store.claim_recent(mailbox_id)
        return MailboxView(mb, view.uids, view.modseqs, view.flags, view.sizes, recent)

    async def changes(self, mailbox_id: int, since: int, *, claim_recent: bool) -> MailboxChanges:
        """Changes after mod-sequence ``since``; new messages are claimed as \\Recent
        (RFC 3501 §2.3.2) when ``claim_recent`` and no other session took them first."""
        found = await self.store.changes(mailbox_id, since)
        if not claim_recent or not found.exists or not found.changed:
            return found
        recent = await self.store.claim_recent(mailbox_id)
        return MailboxChanges(
            found.highestmodseq, found.uidnext, found.changed, found.expunged, recent, found.exists
        )

    async def vanished(self, mailbox_id: int, since: int) -> list[int]:
        return await self.store.vanished(mailbox_id, since)

    # -- changes ----------------------------------------------------------------------
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: StoreMode,
        flags: Sequence[str],
        unchangedsince: int | None = None,
    ) -> FlagChange:
        result = await self.store.store_flags(mailbox_id, uids, mode, flags, unchangedsince)
        if result.changed:
            self.notifier.publish([mailbox_id])
        return result

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        gone = await self.store.expunge(mailbox_id, uids)
        if gone:
            self.notifier.publish([mailbox_id])
        return gone

    async def copy(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, move: bool
    ) -> tuple[int, list[tuple[int, int]]]:
        result = await self.store.copy(src_id, uids, dst_id, move=move)
        if result[1]:
            self.notifier.publish([src_id, dst_id] if move else [dst_id])
        return result

    async def append(
        self,
        user_id: int,
        mailbox: MailboxRecord,
        raw: bytes,
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
    ) -> tuple[int, int]:
        """File ``raw`` in ``mailbox``; durable on return. Returns (UIDVALIDITY, UID)."""
        key = await self.blobs.put(raw)
        message = NewMessage(
            blob=key,
            size=len(raw),
            internal_date=internal_date or self.clock.now(),
            headers=summarize(read_headers(raw)),
            flags=tuple(flags),
        )
        result = await self.store.append(user_id, mailbox.id, message)
        self.notifier.publish([mailbox.id])
        self.indexer.schedule([key])
        return result

    async def rename_inbox(self, user_id: int, inbox: MailboxRecord, new: str) -> None:
        """RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox with
        the new name and leaves INBOX empty."""
        target = validate(new)
        await self.folders.create(user_id, lineage(target), None, self.clock.now())
        created = await self.folders.mailbox(user_id, target)
        assert created is not None
        uids = (await self.store.open(inbox.id)).uids
        if uids:
            await self.copy(inbox.id, uids, created.id, move=True)

    # -- reading ---------------------------------------------------------------------
    async def bodies(self, mailbox_id: int, uids: Sequence[int]) -> list[BodyRef]:
        return await self.store.bodies(mailbox_id, uids)

    async def read_many(self, blobs: Sequence[str]) -> list[bytes]:
        """Several bodies in one worker-thread hop (FETCH of many messages)."""
        return await self.blobs.get_many(blobs)

    async def sort_rows(self, mailbox_id: int) -> list[SortRow]:
        return await self.store.sort_rows(mailbox_id)

    async def text_uids(
        self,
        mailbox_id: int,
        needle: str,
        where: Literal["headers", "body"],
        modseq: int,
    ) -> list[tuple[int, str]]:
        """(UID, header text) of messages whose headers/body contain ``needle``
        (case-insensitive); every message up to mod-sequence ``modseq`` is indexed first."""
        await self.indexer.ensure(mailbox_id, modseq)
        return await self.index_store.text_matches(mailbox_id, where, needle)
