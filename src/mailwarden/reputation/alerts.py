"""Alerts: typed, with a severity, de-duplicated per (type, target) while not resolved.

Raised by the engine (breaker opened, score fell below the threshold) and by guardrails
(an account paused); acknowledged and resolved by operators or automatically when the
condition clears. Listeners (the webhook issue) are called for every new alert.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mailwarden.core.clock import Clock
from mailwarden.store.reputation_sql import AlertRecord, ReputationStore

log = logging.getLogger("mailwarden.alerts")
SEVERITIES = ("info", "warning", "critical")


class AlertService:
    def __init__(self, store: ReputationStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.listeners: list[Callable[[AlertRecord], Awaitable[None]]] = []

    async def raise_(
        self,
        type: str,
        severity: str,
        target: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> AlertRecord:
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r}: expected one of {', '.join(SEVERITIES)}")
        alert, new = await self.store.raise_alert(
            type=type,
            severity=severity,
            target=target,
            message=message,
            details=details or {},
            now=self.clock.now(),
        )
        if new:
            log.warning("alert #%d %s [%s] %s", alert.id, type, severity, message)
            for fn in self.listeners:
                try:
                    await fn(alert)
                except Exception:
                    log.exception("alert listener failed")
        return alert

    async def resolve(self, type: str, target: str, actor: str) -> int:
        return await self.store.resolve_alerts(type, target, actor, self.clock.now())

    async def acknowledge(self, alert_id: int, actor: str) -> AlertRecord | None:
        return await self.store.set_alert_status(alert_id, "acknowledged", actor, self.clock.now())

    async def close(self, alert_id: int, actor: str) -> AlertRecord | None:
        return await self.store.set_alert_status(alert_id, "resolved", actor, self.clock.now())

    async def list(self, status: str | None = "active", limit: int = 100) -> list[AlertRecord]:
        return await self.store.alerts(status=status, limit=limit)
