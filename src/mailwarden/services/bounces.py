"""Bounces both ways: DSNs we send when delivery fails, and DSNs that come back to VERP addresses.

Outgoing: RFC 3464 report to the original envelope sender, from the null sender (so it
can never bounce itself, RFC 5321 §4.5.5), filed locally when the sender is ours.
Incoming: mail to ``bounces+TOKEN@our-domain`` is a report about a message we sent; the
token ties it to that message, the report's Final-Recipient to the recipient. It is kept
(``returned_bounces``) for the reputation engine and passed on to the original sender.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import datetime

from mailwarden.config.schema import Settings
from mailwarden.core.address import Address
from mailwarden.core.clock import Clock
from mailwarden.core.errors import InvalidAddress
from mailwarden.core.events import DeliveryEvent, Outcome
from mailwarden.delivery.dsn import FailedRecipient, compose_dsn
from mailwarden.delivery.local import LocalDelivery, LocalTarget
from mailwarden.delivery.outcome import Bounced
from mailwarden.reputation.feedback.dsn import parse_dsn
from mailwarden.services.accounts import AccountService
from mailwarden.services.sending import SendingService
from mailwarden.store.blobs import BlobStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.records import QueuedMessage, ReturnedBounce, SentToken

log = logging.getLogger("mailwarden.bounces")
_TOKEN = re.compile(r"^[0-9a-f]{16}$")
MAX_REPORT = 10 * 1024 * 1024


class BounceService:
    def __init__(
        self,
        settings: Settings,
        accounts: AccountService,
        sending: SendingService,
        local: LocalDelivery,
        queue: QueueStore,
        blobs: BlobStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sending = sending
        self.local = local
        self.queue = queue
        self.blobs = blobs
        self.clock = clock

    # -- outgoing --------------------------------------------------------------------
    async def send_dsn(
        self, msg: QueuedMessage, original: bytes, bounced: Sequence[Bounced]
    ) -> None:
        """Tell ``msg``'s sender which recipients failed for good (RFC 3464)."""
        if not msg.mail_from or not bounced:
            return
        now = self.clock.now()
        failures = [
            FailedRecipient(
                recipient=b.recipient.rcpt,
                status=b.decision.status,
                diagnostic=_diagnostic(b),
                remote_mta=b.mx_host,
                last_attempt=now,
            )
            for b in bounced
        ]
        host = self.settings.hostname
        dsn = compose_dsn(
            reporting_mta=host,
            original=original,
            original_sender=msg.mail_from,
            recipients=failures,
            arrival=msg.created_at,
            now=now,
            message_id_domain=host,
            queue_id=msg.queue_id,
        )
        local, remote = await self._split(msg.mail_from)
        sub = await self.sending.submit(dsn, mail_from="", remote=remote, local=local)
        log.info(
            "%s: DSN %s to <%s> for %d recipient(s)",
            msg.queue_id,
            sub.queue_id,
            msg.mail_from,
            len(failures),
        )

    async def _split(self, sender: str) -> tuple[list[LocalTarget], list[str]]:
        try:
            addr = Address.parse(sender)
        except InvalidAddress:
            return [], []
        if not await self.accounts.is_local_domain(addr.domain):
            return [], [sender]
        found = await self.accounts.resolve(addr)
        if found is None:
            log.warning("DSN for <%s> dropped: no such local user", sender)
            return [], []
        return [LocalTarget(sender, u) for u in found.users], []

    # -- incoming --------------------------------------------------------------------
    def token_of(self, rcpt: Address) -> str | None:
        """The VERP token in ``bounces+TOKEN@domain``, or None."""
        prefix = self.settings.delivery.bounce_prefix.lower() + "+"
        local = rcpt.local.lower()
        if not local.startswith(prefix):
            return None
        token = local[len(prefix) :]
        return token if _TOKEN.match(token) else None

    async def known_token(self, token: str) -> SentToken | None:
        return await self.queue.sent_token(token)

    async def receive(self, sent: SentToken, raw: bytes) -> int:
        """Record a returned report about ``sent``; pass it to the original sender.
        Returns the recipients found. Parsing runs in a thread (hostile MIME is slow)."""
        report = await asyncio.to_thread(parse_dsn, raw, max_size=MAX_REPORT)
        key = await self.blobs.put(raw)
        now = self.clock.now()
        rows = [
            ReturnedBounce(
                at=now,
                token=sent.token,
                queue_id=sent.queue_id,
                recipient=r.final_recipient or r.original_recipient,
                action=r.action,
                status=r.status,
                diagnostic=r.diagnostic,
                remote_mta=r.remote_mta or report.reporting_mta,
                blob=key,
            )
            for r in report.recipients
        ]
        if not rows:  # not a standard DSN: keep it anyway, the next issue adds heuristics
            rows = [ReturnedBounce(now, sent.token, sent.queue_id, "", "", "", "", "", key)]
        await self.queue.add_returned_bounces(rows)
        feedback = [_async_bounce(sent, r, now) for r in rows if r.action == "failed"]
        if feedback:
            # One event per failed recipient: the reputation engine counts it against the
            # sending domain and account (a hard bounce that came back after delivery).
            await self.queue.record([], feedback)
        log.info(
            "returned DSN for %s: %s",
            sent.queue_id,
            ", ".join(f"{r.recipient} {r.status}" for r in rows),
        )
        if sent.mail_from:
            local, _remote = await self._split(sent.mail_from)
            if local:
                await self.local.deliver(raw, mail_from="", targets=local)
        return len(report.recipients)


def _async_bounce(sent: SentToken, r: ReturnedBounce, now: datetime) -> DeliveryEvent:
    m = _REPLY.match(r.diagnostic.removeprefix("smtp;").strip())
    code = int(m.group(1)) if m else None
    rcpt = r.recipient.removeprefix("rfc822;").strip()
    return DeliveryEvent(
        at=now,
        outcome=Outcome.ASYNC_BOUNCE,
        queue_id=sent.queue_id,
        message_id=sent.message_id,
        recipient=rcpt,
        recipient_domain=rcpt.rpartition("@")[2].lower(),
        sender=sent.mail_from,
        sender_domain=sent.mail_from.rpartition("@")[2].lower(),
        account=sent.account,
        attempt=0,
        code=code,
        enhanced=r.status,
        text=r.diagnostic,
        mx_host=r.remote_mta,
        route="feedback",
    )


_REPLY = re.compile(r"^([245]\d\d)[ -]")


def _diagnostic(b: Bounced) -> str:
    r = b.reply
    if r.code is None:
        return r.text
    return f"{r.code} {r.enhanced} {r.text}".replace("  ", " ").strip()
