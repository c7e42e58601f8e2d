"""Reading mailboxes and messages (for the CLI now, IMAP and the web API later)."""

from __future__ import annotations

from mailwarden.core.address import Address
from mailwarden.core.errors import NotFound
from mailwarden.store.blobs import BlobStore
from mailwarden.store.ports import Store
from mailwarden.store.records import MailboxRecord, MessageRecord


class MailstoreService:
    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    async def _user_id(self, address: str) -> int:
        user = await self.store.get_user(Address.parse(address).key())
        if user is None:
            raise NotFound(f"user {address} does not exist")
        return user.id

    async def mailboxes(self, address: str) -> list[MailboxRecord]:
        return await self.store.list_mailboxes(await self._user_id(address))

    async def _mailbox(self, address: str, mailbox: str) -> MailboxRecord:
        mb = await self.store.get_mailbox(await self._user_id(address), mailbox)
        if mb is None:
            raise NotFound(f"{address} has no mailbox {mailbox!r}")
        return mb

    async def messages(self, address: str, mailbox: str, limit: int = 1000) -> list[MessageRecord]:
        mb = await self._mailbox(address, mailbox)
        return await self.store.list_messages(mb.id, limit=limit)

    async def raw_message(self, address: str, mailbox: str, uid: int) -> bytes:
        mb = await self._mailbox(address, mailbox)
        msg = await self.store.get_message(mb.id, uid)
        if msg is None:
            raise NotFound(f"no message with UID {uid} in {mailbox}")
        return await self.blobs.get(msg.blob)
