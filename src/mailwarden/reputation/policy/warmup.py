"""Warm-up: a daily cap per lane that grows day by day while the lane stays healthy. Pure.

A lane's warm-up day starts with its first send (``day_start``) and lasts ``day_seconds``;
later days follow on the same grid (no drift, whatever time the roll happens). When a day
ends, :func:`roll` judges it:

- **healthy** (see :func:`healthy`) **and used** (at least ``min_fill`` of its cap sent):
  advance one day (``warmup_step``);
- **unhealthy**: stay on the same day (``warmup_hold``);
- **idle or little used** (nothing, or less than ``min_fill`` of the cap, sent; nothing
  bad): neither advance nor hold, no action. The schedule advances only on evidence: a
  lane that sends 5 messages a day never "warms up" to 80,000 without having sent them.

Several days passing at once (an idle weekend) count as the one finished day followed by
idle days: at most one step per roll. Health figures (:func:`record`) are counted on the
day they arrive, so a late complaint counts against the day it came in.

A message is admitted while ``sent + n <= cap``. A message with more recipients than the
whole cap is admitted on a day with nothing sent yet (otherwise it could never go).

:func:`admit` rolls the day itself so it is never wrong, but drops the roll's action: call
:func:`roll` first (e.g. on the engine's tick) to record ``warmup_step`` / ``warmup_hold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mailwarden.reputation.policy.actions import Action, duration, pct
from mailwarden.reputation.windows import ATTEMPT_OUTCOMES, HARD_CLASSES

DEFAULT_SCHEDULE = "moderate"


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    caps: tuple[int, ...]  # messages per day per provider, day 1..N; after the last: no cap


def _validate(name: str, raw: object) -> Schedule:
    where = f"warmup schedule {name!r}"
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
        raise ValueError(f"{where}: expected a non-empty list of daily caps, got {raw!r}")
    caps: list[int] = []
    for i, v in enumerate(raw, start=1):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{where}: day {i} cap must be a positive whole number, got {v!r}")
        if caps and v < caps[-1]:
            raise ValueError(f"{where}: caps must not decrease (day {i}: {v} after {caps[-1]})")
        caps.append(v)
    return Schedule(name, tuple(caps))


def load_schedules(
    path: Path | None = None, custom: Mapping[str, Sequence[int]] | None = None
) -> dict[str, Schedule]:
    """The schedules in ``path`` (None: packaged ``rules/warmup.yaml``), plus ``custom`` ones
    from the configuration (which may replace a packaged one of the same name)."""
    if path is None:
        res = resources.files("mailwarden.reputation").joinpath("rules/warmup.yaml")
        data: Any = yaml.safe_load(res.read_text(encoding="utf-8"))
    else:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError("warmup schedules: expected a mapping of name -> list of daily caps")
    merged: dict[str, object] = {str(k): v for k, v in data.items()}
    merged.update(custom or {})
    return {name: _validate(name, caps) for name, caps in merged.items()}


@dataclass(frozen=True, slots=True)
class WarmupSettings:
    day_seconds: float = 86400.0
    max_bounce_rate: float = 0.05  # hard_bounce / attempts on the day
    max_complaint_rate: float = 0.001  # complaints / attempts on the day
    min_sample: int = 20  # fewer attempts: healthy if nothing bad happened at all
    min_fill: float = 0.5  # a day advances the schedule only if it sent this share of its cap


@dataclass(frozen=True, slots=True)
class WarmupState:
    day: int = 0  # index into caps; >= len(caps) → warmed up
    day_start: float = 0.0  # epoch seconds the current day began (0 = starts at first send)
    sent: int = 0  # recipients admitted on the current day
    bounced: int = 0  # hard bounces on the current day
    complaints: int = 0
    attempts: int = 0


def cap(st: WarmupState, sched: Schedule) -> int | None:
    """Today's cap, or None when warmed up."""
    return sched.caps[st.day] if st.day < len(sched.caps) else None


def healthy(st: WarmupState, s: WarmupSettings = WarmupSettings()) -> bool:
    """Rates within limits, or, below ``min_sample`` attempts, nothing bad at all."""
    if st.attempts < s.min_sample:
        return st.bounced == 0 and st.complaints == 0
    return (
        st.bounced / st.attempts <= s.max_bounce_rate
        and st.complaints / st.attempts <= s.max_complaint_rate
    )


def _figures(st: WarmupState) -> dict[str, float | int | str]:
    return {
        "day": st.day + 1,
        "sent": st.sent,
        "attempts": st.attempts,
        "bounced": st.bounced,
        "complaints": st.complaints,
    }


def _verdict(st: WarmupState, sched: Schedule, s: WarmupSettings) -> tuple[int, Action | None]:
    """The next day index after the finished day ``st``, with the action if any."""
    today = cap(st, sched)
    if today is None or (st.sent == 0 and st.attempts == 0 and not st.bounced + st.complaints):
        return st.day, None
    n = max(st.attempts, 1)
    health = f"{st.bounced} hard bounces, {st.complaints} complaints in {st.attempts} attempts"
    if not healthy(st, s):
        rates = f" ({pct(st.bounced / n)} / {pct(st.complaints / n)})"
        reason = f"warm-up day {st.day + 1} held: {health}{rates if st.attempts else ''}"
        return st.day, Action("warmup_hold", reason, _figures(st) | {"cap": today})
    if st.sent < s.min_fill * today:
        return st.day, None
    nxt = cap(replace(st, day=st.day + 1), sched)
    to = f"cap {nxt}/day" if nxt is not None else "warmed up, no cap"
    reason = f"warm-up day {st.day + 1} done ({st.sent}/{today} sent, {health}): {to}"
    return st.day + 1, Action("warmup_step", reason, _figures(st) | {"cap": today})


def roll(
    st: WarmupState, sched: Schedule, *, now: float, s: WarmupSettings = WarmupSettings()
) -> tuple[WarmupState, Action | None]:
    """End the current day if it is over: judge it (module docstring), start the next."""
    if st.day > len(sched.caps):  # set_day beyond the end: warmed up, one step back from it
        st = replace(st, day=len(sched.caps))
    if st.day_start <= 0.0 or now < st.day_start + s.day_seconds:
        return st, None
    periods = int((now - st.day_start) // s.day_seconds)
    day, act = _verdict(st, sched, s)
    return WarmupState(day, st.day_start + periods * s.day_seconds), act


def admit(
    st: WarmupState,
    sched: Schedule,
    *,
    now: float,
    n: int = 1,
    s: WarmupSettings = WarmupSettings(),
) -> tuple[WarmupState, bool, str, float]:
    """May ``n`` more recipients go today? Returns (state, allowed, reason, wait seconds)."""
    st, _ = roll(st, sched, now=now, s=s)
    start = st.day_start if st.day_start > 0.0 else now
    today = cap(st, sched)
    if today is None or st.sent + n <= today or st.sent == 0:
        # built directly, not with replace(): this runs once per message
        new = WarmupState(st.day, start, st.sent + n, st.bounced, st.complaints, st.attempts)
        if today is None:
            return new, True, "warmed up", 0.0
        return new, True, f"warm-up day {st.day + 1}: {new.sent}/{today}", 0.0
    where = f"warm-up day {st.day + 1} of {len(sched.caps)}"
    wait = start + s.day_seconds - now
    reason = f"{where}: cap {today} reached ({st.sent} sent); next day in {duration(wait)}"
    return st, False, reason, wait


def record(st: WarmupState, reply_class: str, outcome: str) -> WarmupState:
    """Count one result into the day's health figures."""
    attempts = st.attempts + (outcome in ATTEMPT_OUTCOMES)
    hard = outcome in ("bounced", "async_bounce") and reply_class in HARD_CLASSES
    complaints = st.complaints + (outcome == "complaint")
    return replace(st, attempts=attempts, bounced=st.bounced + hard, complaints=complaints)


def step_back(
    st: WarmupState, *, now: float, reason: str = "breaker tripped"
) -> tuple[WarmupState, Action]:
    """One day back (not below day 1), keeping today's counts: what was sent still counts."""
    day = max(0, st.day - 1)
    return replace(st, day=day), Action(
        "warmup_back",
        f"{reason}: warm-up back from day {st.day + 1} to day {day + 1}",
        {"day_before": st.day + 1, "day": day + 1, "at": now},
    )


def set_day(st: WarmupState, day: int, *, now: float) -> WarmupState:
    """Operator override: jump to ``day`` (0-based index). A lane not started starts now."""
    if day < 0:
        raise ValueError(f"warm-up day must not be negative, got {day}")
    return replace(st, day=day, day_start=st.day_start if st.day_start > 0.0 else now)
