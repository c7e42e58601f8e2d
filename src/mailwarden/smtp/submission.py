"""Submission (RFC 6409, ports 587 and 465): people and apps hand over mail to send.

AUTH PLAIN/LOGIN only under TLS (aiosmtpd answers 538 5.7.11 before STARTTLS), and
MAIL only after AUTH (530 5.7.0) unless the client is in ``submission.relay_networks``.
An account may use only its own addresses and aliases, in MAIL FROM and in From (553
5.7.1). Failed logins are counted per IP and per account (services/authguard.py).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from mailwarden.config.schema import Settings
from mailwarden.core import replies
from mailwarden.core.clock import Clock
from mailwarden.core.errors import QuotaExceeded
from mailwarden.core.headers import read_headers
from mailwarden.core.replies import Reply
from mailwarden.delivery.prepare import (
    SENDER_NOT_OWNED,
    Checked,
    check_submission,
    complete_headers,
)
from mailwarden.services.accounts import AccountService
from mailwarden.services.authguard import AuthGuard
from mailwarden.services.sending import SendingService, new_queue_id
from mailwarden.services.tenants import TenantGuard
from mailwarden.smtp.headers import received_header
from mailwarden.smtp.server import (
    HookNames,
    MailEnvelope,
    MailwardenSMTP,
    accept_local,
    check_recipient,
    check_sender,
    ehlo_reply,
)
from mailwarden.store.records import UserRecord

log = logging.getLogger("mailwarden.smtp.submission")


class _NoLoginDataNag(logging.Filter):
    """aiosmtpd's own smtp_AUTH sets the deprecated Session.login_data and then warns
    about it on every login; there is nothing for an operator to do about that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in str(record.msg)


logging.getLogger("mail.log").addFilter(_NoLoginDataNag())

AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
# RFC 4954 §6: 454 4.7.0 temporary authentication failure (here: too many failures).
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed logins; try again later")
AUTH_TLS_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication")
NULL_SENDER = Reply(553, "5.7.1", "A null sender is not allowed for submission")


class SubmissionSMTP(MailwardenSMTP):
    """Submission session: AUTH is verified asynchronously by the handler.

    aiosmtpd parses PLAIN and LOGIN but calls a *synchronous* authenticator; argon2 must
    not run on the event loop, so the parsed credentials come back here and the handler
    checks them in a thread.
    """

    def __init__(self, handler: Any, *, implicit_tls: bool, **kwargs: Any) -> None:
        # On 465 the whole connection is TLS already (RFC 8314), which aiosmtpd's
        # STARTTLS-based check cannot see.
        super().__init__(handler, auth_require_tls=not implicit_tls, **kwargs)

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=True, handled=False, auth_data=auth_data)  # parsed only

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, parsed: AuthResult) -> AuthResult:
        if not parsed.success or not isinstance(parsed.auth_data, LoginPassword):
            return parsed
        creds = parsed.auth_data
        handler: SubmissionHandler = self.event_handler
        assert self.session is not None
        return await handler.authenticate(self.session, creds.login, creds.password)


# RFC 3463 X.7.1 "delivery not authorized": temporary, so the client keeps the message and
# retries (the account is paused or over its ceiling).
TENANT_HELD = Reply(451, "4.7.1", "Sending is paused for this account, try again later")


class SubmissionHandler(HookNames):
    def __init__(
        self,
        settings: Settings,
        accounts: AccountService,
        guard: AuthGuard,
        sending: SendingService,
        clock: Clock,
        tenants: TenantGuard | None = None,
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.accounts = accounts
        self.guard = guard
        self.sending = sending
        self.clock = clock
        self.relay_networks = [
            ipaddress.ip_network(n, strict=False) for n in settings.submission.relay_networks
        ]

    async def authenticate(self, session: Session, login: bytes, password: bytes) -> AuthResult:
        ip = _ip(session)
        name = login.decode("utf-8", "replace").strip()
        lock = await self.guard.check(ip, name.lower())
        if lock is not None:
            log.warning("auth refused for %r from %s: %s", name, ip, lock.reason)
            return AuthResult(success=False, handled=False, message=str(AUTH_LOCKED))
        user = await self.accounts.authenticate(name, password.decode("utf-8", "replace"))
        if user is None:
            await self.guard.failed(ip, name.lower(), "submission")
            log.info("auth failed for %r from %s", name, ip)  # never the password
            return AuthResult(success=False, handled=False, message=str(AUTH_FAILED))
        log.info("auth ok: %s from %s", user.address, ip)
        return AuthResult(success=True, auth_data=user, message=str(AUTH_OK))

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

    def _user(self, session: Session) -> UserRecord | None:
        data = session.auth_data if session.authenticated else None
        return data if isinstance(data, UserRecord) else None

    def _relay_client(self, session: Session) -> bool:
        try:
            ip = ipaddress.ip_address(_ip(session))
        except ValueError:
            return False
        return any(ip in net for net in self.relay_networks)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        user = self._user(session)
        if user is None and not self._relay_client(session):
            return str(AUTH_REQUIRED)  # RFC 4954 §6
        sender = check_sender(address)
        if sender is None:
            return str(NULL_SENDER)
        if isinstance(sender, Reply):
            return str(sender)
        if user is not None and not await self.accounts.may_send_as(user, address):
            return str(SENDER_NOT_OWNED.with_text(f"{user.address} may not send as <{address}>"))
        if user is not None and self.tenants is not None:
            why = await self.tenants.paused(user.address)
            if why is not None:
                return str(TENANT_HELD.with_text(f"Sending is paused for this account: {why}"))
        envelope.mail_from = address
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
        if await self.accounts.is_local_domain(rcpt.domain):
            # Local recipients are filed directly; unknown ones are refused now.
            problem = await accept_local(self.accounts, envelope, rcpt, 0)
            if problem is not None:
                return str(problem)
        else:
            envelope.remote_rcpts.append(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: MailEnvelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        user = self._user(session)
        headers = read_headers(content)
        checked = check_submission(content, headers, smtputf8="SMTPUTF8" in envelope.mail_options)
        if isinstance(checked, Reply):
            return str(checked)
        if user is not None and not await self.accounts.may_send_as(
            user, str(checked.from_address)
        ):
            return str(SENDER_NOT_OWNED.with_text(f"From: <{checked.from_address}> is not yours"))
        return await self._submit(
            server, session, envelope, content=content, headers=headers, checked=checked, user=user
        )

    async def _submit(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        *,
        content: bytes,
        headers: list[tuple[str, str]],
        checked: Checked,
        user: UserRecord | None,
    ) -> str:
        qid = new_queue_id()
        now = self.clock.now()
        domain = checked.from_address.domain
        raw, headers = complete_headers(content, headers, domain=domain, now=now)
        trace = received_header(
            server,
            session,
            envelope,
            qid,
            hostname=self.settings.hostname,
            now=now,
            authenticated=user is not None,
        )
        sign = domain if await self.accounts.is_local_domain(domain) else ""
        if user is not None and self.tenants is not None and envelope.remote_rcpts:
            verdict = await self.tenants.check(user.address, envelope.remote_rcpts)
            if verdict.action != "allow":
                log.warning("%s: %s held back: %s", qid, user.address, verdict.reason)
                what = "paused" if verdict.action == "pause" else "limited"
                return str(TENANT_HELD.with_text(f"Sending is {what}: {verdict.reason}"))
        try:
            sub = await self.sending.submit(
                trace + raw,
                mail_from=str(envelope.mail_from),
                remote=envelope.remote_rcpts,
                local=envelope.local_targets,
                account=user.address if user else "",
                sign_domain=sign,
                headers=headers,
                sent_copy_for=user if user is not None and user.save_sent else None,
                queue_id=qid,
            )
        except QuotaExceeded:
            return str(replies.OVER_QUOTA)
        except Exception:
            log.exception("%s: submission failed", qid)
            return str(replies.TEMP_FAILURE)
        log.info(
            "%s submitted by %s from=<%s> local=%d remote=%d signed=%s",
            qid,
            user.address if user else f"relay {_ip(session)}",
            envelope.mail_from,
            sub.local,
            sub.remote,
            sub.signed,
        )
        return str(replies.QUEUED.with_text(f"Message accepted as {qid}"))


def _ip(session: Session) -> str:
    return str(session.peer[0]) if session.peer else ""
