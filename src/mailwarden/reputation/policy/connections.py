"""Adaptive connection limit per provider (pure): AIMD on the number of concurrent sessions.

A provider that says "too many connections" (Microsoft's 4.7.x "too many concurrent
connections", Postfix's 421 4.7.0 "Error: too many connections from ...") is asking for
fewer sessions, not a lower rate: the limit is cut (× ``decrease``, at most once per
``cut_cooldown``, never below 1) and grows back by one after ``increase_after`` deliveries
in a row, up to the provider's configured ``connections``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from mailwarden.reputation.policy.actions import Action
from mailwarden.reputation.policy.aimd import AimdSettings

_DEFAULT = AimdSettings()
CONNECTION_WORDS = re.compile(r"connection|session|concurren", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ConnState:
    limit: int
    successes: int = 0
    last_cut: float = 0.0


def on_result(
    st: ConnState,
    reply_class: str,
    text: str,
    *,
    now: float,
    maximum: int,
    s: AimdSettings = _DEFAULT,
) -> tuple[ConnState, Action | None]:
    if reply_class == "throttled" and CONNECTION_WORDS.search(text):
        if st.last_cut and now - st.last_cut < s.cut_cooldown:
            return replace(st, successes=0), None
        new = max(1, math.floor(st.limit * s.decrease))
        inputs: dict[str, float | int | str] = {
            "connections": st.limit,
            "new": new,
            "reply": text[:120],
        }
        if new == st.limit:
            return ConnState(new, 0, now), None
        why = f"too many connections: {st.limit} -> {new} concurrent sessions"
        return ConnState(new, 0, now), Action("throttle", why, inputs)
    if reply_class != "delivered":
        return st, None
    run = st.successes + 1
    if run < s.increase_after or st.limit >= maximum:
        return replace(st, successes=run), None
    if st.last_cut and now - st.last_cut < s.cut_cooldown:
        return replace(st, successes=run), None
    new = st.limit + 1
    why = f"{run} deliveries in a row: {st.limit} -> {new} concurrent sessions"
    return ConnState(new, 0, st.last_cut), Action("ramp", why, {"connections": st.limit})
