"""Sending: one entry point for submission (and later the HTTP API) to hand over a message.

It signs the message (every active DKIM key of the From domain), files it for local
recipients directly (no SMTP loop through ourselves), and commits it to the outbound
queue for the rest, with a VERP Return-Path that ties a later bounce to this message.
Everything is durable when ``submit`` returns.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from mailwarden.config.schema import Settings
from mailwarden.core.address import Address
from mailwarden.core.clock import Clock
from mailwarden.core.headers import read_headers
from mailwarden.delivery.local import LocalDelivery, LocalTarget
from mailwarden.delivery.prepare import from_addresses, message_id
from mailwarden.services.accounts import AccountService
from mailwarden.services.dkim_keys import DkimService
from mailwarden.store.blobs import BlobStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.records import NewQueued, UserRecord

log = logging.getLogger("mailwarden.sending")
# Bodies up to this size are stored in the queue row itself (see store/tables.py). The
# runner holds at most MAX_IN_FLIGHT claimed recipients, so this bounds its memory too.
INLINE_BODY = 32 * 1024


@dataclass(frozen=True, slots=True)
class Submitted:
    queue_id: str
    local: int  # recipients filed locally
    remote: int  # recipients queued for delivery
    signed: bool


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


class SendingService:
    def __init__(
        self,
        settings: Settings,
        accounts: AccountService,
        local: LocalDelivery,
        blobs: BlobStore,
        queue: QueueStore,
        dkim: DkimService,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.local = local
        self.blobs = blobs
        self.queue = queue
        self.dkim = dkim
        self.clock = clock
        self.on_enqueued: Callable[[], None] = lambda: None  # the runner's wake-up

    async def submit(
        self,
        raw: bytes,
        *,
        mail_from: str,
        remote: Sequence[str],
        local: Sequence[LocalTarget] = (),
        account: str = "",
        sign_domain: str = "",
        sent_copy_for: UserRecord | None = None,
        queue_id: str | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> Submitted:
        """Sign, file locally, queue the rest; durable when it returns. ``headers``, when
        the caller has parsed them already, are ``raw``'s header fields."""
        qid = queue_id or new_queue_id()
        signed = raw
        if sign_domain:
            signed = await self.dkim.sign(raw, sign_domain)
        if headers is None:
            headers = read_headers(signed)
        if local:
            await self.local.deliver(signed, mail_from=mail_from, targets=local, headers=headers)
        if remote:
            await self._enqueue(signed, qid, mail_from, remote, account, headers)
        if sent_copy_for is not None:
            target = LocalTarget(sent_copy_for.address, sent_copy_for)
            await self.local.deliver(
                signed,
                mail_from=mail_from,
                targets=[target],
                mailbox="\\Sent",
                flags=("\\Seen",),
                headers=headers,
            )
        return Submitted(qid, len(local), len(remote), signed is not raw)

    async def _enqueue(
        self,
        data: bytes,
        qid: str,
        mail_from: str,
        rcpts: Sequence[str],
        account: str,
        headers: Sequence[tuple[str, str]],
    ) -> None:
        now = self.clock.now()
        token = secrets.token_hex(8)
        return_path = await self.return_path(mail_from, token)
        inline = len(data) <= INLINE_BODY
        # A private blob (salted with the queue id): deleted when the message leaves the queue.
        key = "" if inline else await self.blobs.put(data, salt=qid.encode())
        from_domain = _from_domain(headers) or (mail_from.rpartition("@")[2].lower())
        await self.queue.enqueue(
            NewQueued(
                queue_id=qid,
                token=token,
                blob=key,
                body=data if inline else None,
                size=len(data),
                mail_from=mail_from,
                return_path=return_path,
                sender_domain=from_domain,
                account=account,
                message_id=message_id(headers),
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.delivery.max_lifetime),
                recipients=tuple(rcpts),
            )
        )
        log.info(
            "%s queued from=<%s> rcpts=%d size=%d account=%s",
            qid,
            mail_from,
            len(rcpts),
            len(data),
            account or "-",
        )
        self.on_enqueued()

    async def return_path(self, mail_from: str, token: str) -> str:
        """VERP: ``bounces+TOKEN@sender-domain`` when we receive mail for that domain.

        A null sender stays null (RFC 5321 §4.5.5: a DSN must never cause another one),
        and a sender in a domain we do not host keeps its own address.
        """
        if not mail_from:
            return ""
        domain = mail_from.rpartition("@")[2].lower()
        if not await self.accounts.is_local_domain(domain):
            return mail_from
        return f"{self.settings.delivery.bounce_prefix}+{token}@{domain}"


def _from_domain(headers: Sequence[tuple[str, str]]) -> str:
    addrs = from_addresses(headers)
    if len(addrs) != 1:
        return ""
    try:
        return Address.parse(addrs[0]).domain
    except ValueError:
        return ""
