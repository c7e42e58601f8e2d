"""Tenant (account) guardrails at submission: volume ceilings and compromise signals. Pure.

Checked in this order; the first that applies decides:

1. **New recipients** → ``pause``: in the last hour at least ``new_recipient_min``
   first-time recipients, making up at least ``new_recipient_fraction`` of the hour's
   recipients. A person's mail goes mostly to people they wrote to before; a stolen
   password mailing a bought list goes almost only to strangers.
2. **Spike** → ``pause``: the last hour (with this message) is more than ``spike_factor``
   times the trailing hourly baseline *and* at least ``spike_min``. The baseline counts
   only with ``baseline_min_hours`` of history; without one (a new account) the spike rule
   is just "at least ``spike_min × no_baseline_factor`` in an hour" (1,000 by default),
   leaving ordinary first-day volume to the ceilings.
3. **Daily ceiling**, then **hourly ceiling** → ``defer`` (answer 451, retry later):
   ``last_day + adding > daily_limit`` / ``last_hour + adding > hourly_limit`` (0 = none).
   ``retry_after`` estimates when the window will have room, assuming the window's mail
   was spread evenly: ``excess × span / count``, at least ``min_retry_after``, at most the
   span.

A pause is a compromised-credential signal: the caller holds the account's mail (451) and
raises an alert. It lasts until an operator resumes the account, or, when
``pause_seconds`` > 0, that long (``retry_after``). An automatic expiry lets an attacker
resume, so the default is 0: an operator decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailwarden.reputation.policy.actions import Action, duration, pct


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    hourly_limit: int = 5000  # ceilings per account (0 = none)
    daily_limit: int = 50000
    spike_factor: float = 10.0  # last hour > factor × trailing hourly baseline ...
    spike_min: int = 500  # ... and at least this many in the last hour
    baseline_min_hours: int = 24  # history needed before the baseline counts
    no_baseline_factor: float = 2.0  # without a baseline: spike at spike_min × this
    new_recipient_min: int = 300  # first-time recipients in the last hour at least this ...
    new_recipient_fraction: float = 0.9  # ... and at least this share of the hour's recipients
    min_retry_after: float = 60.0  # shortest retry_after of a ceiling deferral
    pause_seconds: float = 0.0  # 0 = a pause lasts until an operator resumes


@dataclass(frozen=True, slots=True)
class TenantVerdict:
    action: str  # "allow" | "defer" (ceiling: 451 until room) | "pause" (anomaly)
    reason: str
    inputs: Mapping[str, float | int | str]
    retry_after: float = 0.0

    def as_action(self) -> Action | None:
        """The ``guardrail_defer`` / ``guardrail_pause`` action to record; None for allow."""
        if self.action == "allow":
            return None
        inputs = {**self.inputs, "retry_after": self.retry_after}
        return Action(f"guardrail_{self.action}", self.reason, inputs)


def _ceiling(
    name: str, count: int, adding: int, limit: int, span: float, s: GuardrailSettings
) -> tuple[str, float] | None:
    if limit <= 0 or count + adding <= limit:
        return None
    if adding > limit:
        return f"message has {adding} recipients, more than the {name} limit of {limit}", span
    excess = count + adding - limit
    wait = min(span, max(s.min_retry_after, excess * span / max(count, 1)))
    return f"{name} limit {limit} reached ({count} sent); retry in about {duration(wait)}", wait


def _spike(
    volume: int, baseline: float | None, history_hours: float, s: GuardrailSettings
) -> str | None:
    if baseline is not None and history_hours >= s.baseline_min_hours:
        if volume > s.spike_factor * baseline and volume >= s.spike_min:
            return (
                f"volume spike: {volume} in the last hour, over {s.spike_factor:g}x "
                f"the usual {baseline:.1f}/h"
            )
        return None
    threshold = s.spike_min * s.no_baseline_factor
    if volume >= threshold:
        return (
            f"volume spike: {volume} in the last hour with {history_hours:.0f}h of history "
            f"(no baseline yet; limit {threshold:.0f})"
        )
    return None


def check_tenant(
    *,
    last_hour: int,
    last_day: int,
    baseline_per_hour: float | None,
    history_hours: float,
    new_recipients_hour: int,
    recipients_hour: int,
    s: GuardrailSettings = GuardrailSettings(),
    adding: int = 1,
) -> TenantVerdict:
    """Judge one submission of ``adding`` recipients against the account's recent volume."""
    inputs: dict[str, float | int | str] = {
        "last_hour": last_hour,
        "last_day": last_day,
        "baseline_per_hour": "none" if baseline_per_hour is None else baseline_per_hour,
        "history_hours": history_hours,
        "new_recipients_hour": new_recipients_hour,
        "recipients_hour": recipients_hour,
        "adding": adding,
    }
    share = new_recipients_hour / recipients_hour if recipients_hour > 0 else 0.0
    if new_recipients_hour >= s.new_recipient_min and share >= s.new_recipient_fraction:
        why = (
            f"{new_recipients_hour} first-time recipients in the last hour "
            f"({pct(share)} of {recipients_hour}): possible compromised account"
        )
        return TenantVerdict("pause", why, inputs | {"trigger": "new_recipients"}, s.pause_seconds)
    spike = _spike(last_hour + adding, baseline_per_hour, history_hours, s)
    if spike:
        why = f"{spike}: possible compromised account"
        return TenantVerdict("pause", why, inputs | {"trigger": "spike"}, s.pause_seconds)
    for name, count, limit, span in (
        ("daily", last_day, s.daily_limit, 86400.0),
        ("hourly", last_hour, s.hourly_limit, 3600.0),
    ):
        hit = _ceiling(name, count, adding, limit, span, s)
        if hit:
            return TenantVerdict("defer", hit[0], inputs | {"trigger": name}, hit[1])
    return TenantVerdict("allow", "within limits", inputs)
