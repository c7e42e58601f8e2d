"""Brute-force protection for every login (submission now, IMAP and the web API later).

Failures are stored (so every worker process and the operator's CLI see the same counts)
and counted over a sliding window, per client IP and per account. Over either limit, the
login is refused *before* the password is checked, so a locked account cannot be probed.
The decision is a pure function of the counts; the operator lists and lifts lockouts with
`mailwarden auth lockouts` / `mailwarden auth unlock`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from mailwarden.config.schema import SubmissionSettings
from mailwarden.core.clock import Clock
from mailwarden.store.keys_sql import AuthFailureStore
from mailwarden.store.records import AuthFailureCount

log = logging.getLogger("mailwarden.auth.guard")


@dataclass(frozen=True, slots=True)
class Lockout:
    kind: str  # "ip" | "account"
    key: str
    failures: int
    reason: str


def decide(
    ip: str, account: str, ip_failures: int, account_failures: int, s: SubmissionSettings
) -> Lockout | None:
    """Pure: is this login attempt refused, and why."""
    if ip_failures >= s.auth_failures_per_ip:
        return Lockout("ip", ip, ip_failures, f"{ip_failures} failed logins from {ip}")
    if account and account_failures >= s.auth_failures_per_account:
        reason = f"{account_failures} failed logins for {account}"
        return Lockout("account", account, account_failures, reason)
    return None


class AuthGuard:
    def __init__(self, failures: AuthFailureStore, clock: Clock, settings: SubmissionSettings):
        self.failures = failures
        self.clock = clock
        self.settings = settings

    def _since(self) -> timedelta:
        return timedelta(seconds=self.settings.auth_window)

    async def check(self, ip: str, account: str) -> Lockout | None:
        n_ip, n_acct = await self.failures.counts(ip, account, self.clock.now() - self._since())
        return decide(ip, account, n_ip, n_acct, self.settings)

    async def failed(self, ip: str, account: str, service: str) -> None:
        await self.failures.add(ip, account[:320], service, self.clock.now())
        lock = await self.check(ip, account)
        if lock is not None:
            log.warning("auth: locked %s %s (%s) for %s", lock.kind, lock.key, lock.reason, service)

    async def lockouts(self, include_below: bool = False) -> list[tuple[AuthFailureCount, bool]]:
        """(failure count, locked?) per IP and account within the window."""
        tally = await self.failures.tally(self.clock.now() - self._since())
        out = []
        for t in tally:
            limit = (
                self.settings.auth_failures_per_ip
                if t.kind == "ip"
                else self.settings.auth_failures_per_account
            )
            locked = t.failures >= limit
            if locked or include_below:
                out.append((t, locked))
        return out

    async def unlock(self, key: str) -> int:
        n = await self.failures.clear(key)
        log.info("auth: operator unlocked %s (%d failures forgotten)", key, n)
        return n
