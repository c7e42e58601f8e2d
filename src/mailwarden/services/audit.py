"""Audits of hosted domains: on demand (CLI, wizard), at start-up and on a schedule.

The last report of each domain is kept (state rows "audit:<domain>"). A check that
passed and now fails raises an ``audit_<check>`` alert; a pass resolves it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailwarden.auth.dkim import dkim_txt_record
from mailwarden.config.schema import Settings
from mailwarden.core.address import Address, normalize_domain
from mailwarden.core.clock import Clock
from mailwarden.core.errors import NotFound
from mailwarden.delivery.transports import parse_table
from mailwarden.dns.resolver import Resolver
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.audit.auditor import audit
from mailwarden.reputation.audit.dnsbl import parse_blocklists
from mailwarden.reputation.audit.mailboxes import required_addresses
from mailwarden.reputation.audit.model import AuditReport, AuditTarget, DkimKeyInfo, Endpoint
from mailwarden.services.accounts import AccountService
from mailwarden.services.dkim_keys import DkimService
from mailwarden.store.records import DkimKeyRecord
from mailwarden.store.reputation_sql import ReputationStore

log = logging.getLogger("mailwarden.audit")
KIND = "audit"
# A failing MX, SPF, DKIM or a blocklisting loses mail now; the rest erodes trust.
SEVERITY = {"mx": "critical", "spf": "critical", "dkim": "critical", "blocklists": "critical"}
STARTUP_DELAY = 30.0  # seconds after start-up before the first audit (listeners settle)


def _key_info(key: DkimKeyRecord) -> DkimKeyInfo:
    """CPU work (parses the private key): run in a thread."""
    private = serialization.load_pem_private_key(
        key.private_key.encode(), password=None, unsafe_skip_rsa_key_validation=True
    )
    bits = private.key_size if isinstance(private, rsa.RSAPrivateKey) else 0
    # The record from the public half: loading the private PEM again would repeat the
    # RSA consistency check (tens of ms per key).
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    active = key.state == "active"
    return DkimKeyInfo(key.selector, key.algorithm, dkim_txt_record(public), active, bits)


def endpoints(settings: Settings, bound: dict[str, tuple[str, int]]) -> tuple[Endpoint, ...]:
    """Our SMTP listeners with TLS, as a probe on this host reaches them."""
    out = []
    for name, lst in settings.listeners.items():
        if not lst.enabled or lst.protocol not in ("smtp", "submission") or lst.tls == "none":
            continue
        host, port = bound.get(name, (lst.address, lst.port))
        if host in ("*", "0.0.0.0", ""):  # noqa: S104 - a wildcard bind: probe over loopback
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        out.append(Endpoint(name, host, port, lst.tls))
    return tuple(out)


class AuditService:
    def __init__(
        self,
        settings: Settings,
        accounts: AccountService,
        dkim: DkimService,
        store: ReputationStore,
        alerts: AlertService,
        resolver: Resolver,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.dkim = dkim
        self.store = store
        self.alerts = alerts
        self.resolver = resolver
        self.clock = clock
        self.bound: dict[str, tuple[str, int]] = {}  # the running listeners' real ports
        self._task: asyncio.Task[None] | None = None

    async def target(self, domain: str) -> AuditTarget:
        d = normalize_domain(domain)
        if not await self.accounts.is_local_domain(d):
            raise NotFound(f"domain {d} is not hosted here")
        s, r = self.settings, self.settings.reputation
        keys = await self.dkim.published(d)
        infos = await asyncio.to_thread(lambda: tuple(_key_info(k) for k in keys))
        mailboxes: dict[str, str | None] = {}
        for address in required_addresses(d):
            found = await self.accounts.resolve(Address.parse(address))
            users = "" if found is None else ", ".join(u.address for u in found.users)
            mailboxes[address] = users or None
        return AuditTarget(
            domain=d,
            hostname=s.hostname,
            helo_name=s.delivery.helo_name or s.hostname,
            sending_ips=tuple(s.delivery.sending_ips),
            now=self.clock.now(),
            dkim_keys=infos,
            relay_hosts=tuple(t.host for t in parse_table(s.delivery.transports).values()),
            endpoints=endpoints(s, self.bound),
            mailboxes=mailboxes,
            ca_file=r.audit_ca_file,
            cert_file=s.tls.cert,
            https_port=r.audit_https_port,
            blocklists=parse_blocklists(r.blocklists),
        )

    async def audit(self, domain: str, only: Sequence[str] | None = None) -> AuditReport:
        return await audit(await self.target(domain), self.resolver, only)

    async def last(self, domain: str) -> dict[str, Any] | None:
        return (await self.store.rows(KIND)).get(f"audit:{normalize_domain(domain)}")

    async def audit_and_compare(self, domain: str) -> AuditReport:
        """Audit, alert on every check that went from pass to fail, keep the report.

        "From pass" is the last status the check could establish: a pass, then a DNS
        timeout (warn, not checked), then a fail still alerts.
        """
        report = await self.audit(domain)
        before = await self.last(domain) or {}
        known: dict[str, str] = dict(before.get("known", {}))
        target = f"domain:{report.domain}"
        for check in report.checks:
            if not check.checked:
                continue
            if check.status == "fail" and known.get(check.name) == "pass":
                await self.alerts.raise_(
                    f"audit_{check.name}",
                    SEVERITY.get(check.name, "warning"),
                    target,
                    f"{report.domain}: {check.name} check now fails: {check.detail}",
                    {"fix": check.fix, "score": report.score},
                )
            elif check.status == "pass":
                await self.alerts.resolve(f"audit_{check.name}", target, "audit")
            known[check.name] = check.status
        now = self.clock.now()
        state = {**report.as_dict(), "known": known, "at": now.isoformat()}
        await self.store.save_states({f"audit:{report.domain}": (KIND, state)}, now)
        log.info("audit of %s: score %d", report.domain, report.score)
        return report

    async def audit_all(self) -> list[AuditReport]:
        out = []
        for d in await self.accounts.list_domains():
            try:
                out.append(await self.audit_and_compare(d.name))
            except Exception:
                log.exception("audit of %s failed", d.name)
        return out

    def start(self) -> None:
        """Audit every domain shortly after start-up, then every ``audit_interval``."""
        if self.settings.reputation.audit_interval <= 0:
            return
        self._task = asyncio.create_task(self._loop(), name="audit-schedule")

    async def _loop(self) -> None:
        delay = min(STARTUP_DELAY, self.settings.reputation.audit_interval)
        while True:
            await asyncio.sleep(delay)
            await self.audit_all()
            delay = self.settings.reputation.audit_interval

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
