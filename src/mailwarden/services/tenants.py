"""Tenant guardrails at submission: ceilings per account, and pausing an account whose
volume or first-time recipients jump (a compromised-credential signal).

Counts come from the store (recipients queued per account, sent_tokens), so every worker
process sees the same figures; they are re-read at most every ``ttl`` seconds per account,
with this process's own submissions added in between. First-time recipients are those the
account never had a delivery event for; they are counted per process over a rolling hour.
Mail from relay networks (no account) is not subject to guardrails, as Postfix's
mynetworks is trusted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailwarden.config.schema import GuardrailConfig
from mailwarden.core.clock import Clock
from mailwarden.reputation.alerts import AlertService
from mailwarden.reputation.pauses import Pauses
from mailwarden.reputation.policy.guardrails import GuardrailSettings, TenantVerdict, check_tenant
from mailwarden.store.events_sql import EventStore
from mailwarden.store.queue_sql import QueueStore
from mailwarden.store.reputation_sql import ActionRecord

LOG_EVERY = 600.0


@dataclass
class _Usage:
    hour: int
    day: int
    week: int
    history_hours: float
    read_at: float
    added: int = 0
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (t, rcpts, new)
    seen: set[str] = field(default_factory=set)


class TenantGuard:
    def __init__(
        self,
        queue: QueueStore,
        events: EventStore,
        pauses: Pauses,
        alerts: AlertService,
        clock: Clock,
        settings: GuardrailConfig,
        ttl: float = 2.0,
    ) -> None:
        self.queue = queue
        self.events = events
        self.pauses = pauses
        self.alerts = alerts
        self.clock = clock
        self.s = GuardrailSettings(**settings.model_dump())
        self.ttl = ttl
        self._usage: dict[str, _Usage] = {}
        self._logged: dict[str, float] = {}  # account → when its last deferral was logged

    async def paused(self, account: str) -> str | None:
        if not account:
            return None
        return await self.pauses.paused(f"tenant:{account}")

    async def check(self, account: str, rcpts: Sequence[str]) -> TenantVerdict:
        """May ``account`` queue mail to ``rcpts`` now? A "pause" verdict has already
        paused the account, logged why and raised an alert."""
        if not account or not rcpts:
            return TenantVerdict("allow", "", {})
        why = await self.paused(account)
        if why is not None:
            return TenantVerdict("pause", why, {})
        u = await self._read(account)
        mono = time.monotonic()
        while u.recent and u.recent[0][0] < mono - 3600:
            u.recent.popleft()
        fresh = [r for r in {x.lower() for x in rcpts} if r not in u.seen]
        known = await self.events.known_recipients(account, fresh) if fresh else set()
        new = len([r for r in fresh if r not in known])
        verdict = check_tenant(
            last_hour=u.hour + u.added,
            last_day=u.day + u.added,
            baseline_per_hour=(u.week - u.hour) / max(u.history_hours - 1, 1.0)
            if u.history_hours > 1
            else None,
            history_hours=u.history_hours,
            new_recipients_hour=sum(n for _, _, n in u.recent) + new,
            recipients_hour=sum(r for _, r, _ in u.recent) + len(rcpts),
            s=self.s,
            adding=len(rcpts),
        )
        if verdict.action == "allow":
            u.added += len(rcpts)
            u.recent.append((mono, len(rcpts), new))
            u.seen.update(fresh)
        elif verdict.action == "defer" and mono - self._logged.get(account, -1e9) > LOG_EVERY:
            # A ceiling: logged (at most every LOG_EVERY seconds per account), not alerted.
            self._logged[account] = mono
            act = ActionRecord(
                self.clock.now(),
                "auto",
                "guardrail_defer",
                f"tenant:{account}",
                verdict.reason,
                dict(verdict.inputs),
            )
            await self.pauses.store.add_actions([act])
        elif verdict.action == "pause":
            target = f"tenant:{account}"
            await self.pauses.pause(target, "auto", verdict.reason, verdict.inputs)
            await self.alerts.raise_(
                "guardrail",
                "critical",
                target,
                f"{account} paused: {verdict.reason}",
                dict(verdict.inputs),
            )
        return verdict

    async def _read(self, account: str) -> _Usage:
        u = self._usage.get(account)
        mono = time.monotonic()
        if u is not None and mono - u.read_at < self.ttl:
            return u
        now = self.clock.now()
        hour, day, week, first = await self.queue.usage(account, now)
        history = (now - first).total_seconds() / 3600 if first is not None else 0.0
        fresh = _Usage(hour, day, week, history, mono)
        if u is not None:
            fresh.recent, fresh.seen = u.recent, u.seen
        self._usage[account] = fresh
        return fresh
