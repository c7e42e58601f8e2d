"""Inbound MX handler: gathers facts per SMTP stage and calls services for decisions."""

from __future__ import annotations

import logging
import secrets

from aiosmtpd.smtp import SMTP, Session

from mailwarden.auth.results import authentication_results
from mailwarden.auth.verdict import authenticate
from mailwarden.config.schema import Settings
from mailwarden.core import replies
from mailwarden.core.clock import Clock
from mailwarden.core.errors import QuotaExceeded
from mailwarden.core.headers import read_headers
from mailwarden.core.replies import Reply
from mailwarden.delivery.local import LocalDelivery
from mailwarden.dns.resolver import Resolver
from mailwarden.services.accounts import AccountService
from mailwarden.services.bounces import BounceService
from mailwarden.smtp.headers import received_header, strip_forged_results
from mailwarden.smtp.policy import Action, DmarcFacts, decide_message
from mailwarden.smtp.server import (
    HookNames,
    MailEnvelope,
    accept_local,
    check_recipient,
    check_sender,
    declared_size,
    ehlo_reply,
    null_to_empty,
)

log = logging.getLogger("mailwarden.smtp.inbound")


class InboundHandler(HookNames):
    """aiosmtpd hooks for the MX listener. No AUTH here: submission is a separate listener."""

    def __init__(
        self,
        settings: Settings,
        accounts: AccountService,
        local: LocalDelivery,
        resolver: Resolver,
        clock: Clock,
        bounces: BounceService | None = None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.local = local
        self.resolver = resolver
        self.clock = clock
        self.bounces = bounces

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return ehlo_reply(responses)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        sender = check_sender(address)
        if isinstance(sender, Reply):
            return str(sender)
        address = null_to_empty(address)
        envelope.mail_from = address or "<>"  # aiosmtpd needs it truthy for RCPT
        envelope.mail_options.extend(options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        rcpt = check_recipient(envelope, address, self.settings.limits.max_recipients)
        if isinstance(rcpt, Reply):
            return str(rcpt)
        if not await self.accounts.is_local_domain(rcpt.domain):
            # RFC 5321 §3.6.2: never relay for unauthenticated clients.
            return str(replies.RELAY_DENIED)
        token = self.bounces.token_of(rcpt) if self.bounces is not None else None
        if token is not None:
            return await self._bounce_rcpt(envelope, address, token)
        size = declared_size(envelope.mail_options)
        problem = await accept_local(self.accounts, envelope, rcpt, size)
        if problem is not None:
            return str(problem)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return str(replies.RECIPIENT_OK)

    async def _bounce_rcpt(self, envelope: MailEnvelope, address: str, token: str) -> str:
        """A VERP address (bounces+TOKEN@ours): accepted only for tokens we issued."""
        assert self.bounces is not None
        sent = await self.bounces.known_token(token)
        if sent is None:
            return str(replies.NO_SUCH_USER.with_text(f"No such user here: {address}"))
        envelope.returns.append(sent)
        envelope.rcpt_tos.append(address)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: MailEnvelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        queue_id = secrets.token_hex(6)
        ip = str(session.peer[0]) if session.peer else ""
        helo = session.host_name or ""
        mail_from = null_to_empty(str(envelope.mail_from or ""))
        content = strip_forged_results(content, self.settings.hostname)
        headers = read_headers(content)  # once, for authentication and the stored summary
        verdict = await authenticate(
            self.resolver, ip=ip, helo=helo, mail_from=mail_from, message=content, headers=headers
        )
        dmarc = verdict.dmarc
        decision = decide_message(
            DmarcFacts(dmarc.result, dmarc.policy, dmarc.from_domain), self.settings.inbound
        )
        ar = authentication_results(self.settings.hostname, verdict)
        log.info(
            "%s from=<%s> ip=%s rcpts=%d size=%d spf=%s dkim=%s dmarc=%s action=%s",
            queue_id,
            mail_from,
            ip,
            len(envelope.rcpt_tos),
            len(content),
            verdict.spf_mailfrom.result,
            ",".join(d.result for d in verdict.dkim) or "none",
            dmarc.result,
            decision.action.value,
        )
        if decision.action is Action.REJECT:
            return str(decision.reply)
        stored = (
            received_header(
                server,
                session,
                envelope,
                queue_id,
                hostname=self.settings.hostname,
                now=self.clock.now(),
            )
            + (f"Authentication-Results: {ar}\r\n".encode())
            + content
        )
        mailbox = "\\Junk" if decision.action is Action.JUNK else "INBOX"
        try:
            if envelope.returns:
                assert self.bounces is not None
                for sent in envelope.returns:
                    await self.bounces.receive(sent, stored)
            if not envelope.local_targets:
                return str(replies.QUEUED.with_text(f"Message accepted as {queue_id}"))
            await self.local.deliver(
                stored,
                mail_from=mail_from,
                targets=envelope.local_targets,
                mailbox=mailbox,
                auth_results=ar,
                headers=headers,
            )
        except QuotaExceeded:
            return str(replies.OVER_QUOTA)
        except Exception:
            log.exception("%s: local delivery failed", queue_id)
            return str(replies.TEMP_FAILURE)
        return str(replies.QUEUED.with_text(f"Message accepted as {queue_id}"))
