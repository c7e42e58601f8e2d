"""Pauses and operator commands, shared through the store by every process.

A pause is a row ``pause:<target>`` (target: ``tenant:alice@example.com``,
``domain:example.com``, ``ip:192.0.2.1``, ``provider:gmail``, ``lane:<lane key>``) written
by an operator (`mailwarden reputation pause`) or by a guardrail (actor "auto"). Commands
that change the engine's own state (resume a tripped breaker, set a warm-up day) are rows
``command:<n>`` that the engine applies at its next tick and deletes. Every change is
written to the remediation log with who made it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from mailwarden.core.clock import Clock
from mailwarden.store.reputation_sql import ActionRecord, ReputationStore

PAUSE_RECHECK = 60.0  # seconds before held mail of a paused target is looked at again
TARGET_KINDS = ("tenant", "domain", "ip", "provider", "lane")


def check_target(target: str) -> str:
    kind, sep, value = target.partition(":")
    if not sep or kind not in TARGET_KINDS or not value:
        raise ValueError(
            f"target {target!r}: expected KIND:VALUE with KIND one of {', '.join(TARGET_KINDS)}"
        )
    return target


class Pauses:
    def __init__(self, store: ReputationStore, clock: Clock, ttl: float = 2.0) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.active: dict[str, Mapping[str, Any]] = {}
        self._fresh_until = 0.0

    async def refresh(self, force: bool = True) -> None:
        if not force and time.monotonic() < self._fresh_until:
            return
        rows = await self.store.rows("pause")
        self.active = {k.removeprefix("pause:"): v for k, v in rows.items()}
        self._fresh_until = time.monotonic() + self.ttl

    def find(self, *targets: str) -> str | None:
        """The first paused target among ``targets``, as a sentence; None if none is."""
        for t in targets:
            p = self.active.get(t)
            if p is not None:
                return f"{t} paused by {p.get('actor', '?')}: {p.get('reason', '')}".strip()
        return None

    async def paused(self, target: str) -> str | None:
        """As find(), for processes without a ticker: re-reads at most every ``ttl``."""
        await self.refresh(force=False)
        return self.find(target)

    async def pause(
        self, target: str, actor: str, reason: str, inputs: Mapping[str, Any] | None = None
    ) -> None:
        check_target(target)
        now = self.clock.now()
        state = {"actor": actor, "reason": reason, "at": now.isoformat()}
        await self.store.save_states({f"pause:{target}": ("pause", state)}, now)
        kind = "guardrail_pause" if actor == "auto" else "pause"
        await self.store.add_actions(
            [ActionRecord(now, actor, kind, target, reason, dict(inputs or {}))]
        )
        self.active[target] = state

    async def resume(self, target: str, actor: str, reason: str = "") -> bool:
        """Lift a pause and close any breaker of the target; True if a pause was lifted."""
        check_target(target)
        now = self.clock.now()
        lifted = await self.store.delete_rows([f"pause:{target}"])
        await self._command(target, actor, "resume")
        await self.store.add_actions(
            [ActionRecord(now, actor, "resume", target, reason or f"resumed by {actor}", {})]
        )
        self.active.pop(target, None)
        return bool(lifted)

    async def set_warmup(self, target: str, day: int, actor: str) -> None:
        check_target(target)
        if day < 1:
            raise ValueError("warm-up day must be 1 or more")
        await self._command(target, actor, "warmup", day=day)
        await self.store.add_actions(
            [
                ActionRecord(
                    self.clock.now(),
                    actor,
                    "warmup_set",
                    target,
                    f"warm-up day set to {day} by {actor}",
                    {"day": day},
                )
            ]
        )

    async def _command(self, target: str, actor: str, command: str, **extra: Any) -> None:
        now = self.clock.now()
        # Keys sort in the order the commands were given (wall clock, then a random tail).
        key = f"command:{time.time_ns():020d}:{secrets.token_hex(4)}"
        state = {"target": target, "actor": actor, "command": command, **extra}
        await self.store.save_states({key: ("command", state)}, now)

    async def take_commands(self) -> list[dict[str, Any]]:
        rows = await self.store.rows("command")
        if rows:
            await self.store.delete_rows(list(rows))
        return [rows[k] for k in sorted(rows)]
