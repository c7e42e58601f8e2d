"""Pure: window counts → a 0–100 reputation score with the points each input took off.

Inputs, from the counter names of :mod:`mailwarden.reputation.windows`:

- ``hard_bounce``: ``hard_bounce / attempts``; starts costing at 2 %, full 60 points at 10 %;
- ``complaint``: ``complaint / delivered``; 0.1 %, full 70 points at 0.3 %;
- ``throttle``: ``(throttled + reputation_block) / attempts``; 2 %, full 25 points at 20 %;
- ``deferral``: ``deferred / attempts`` (every temporary failure, throttles included);
  5 %, full 10 points at 30 %;
- ``auth_failure``: ``auth_failure / attempts``; 0.5 %, full 30 points at 5 %.

Grounding: Gmail's and Yahoo's bulk-sender rules (2024) ask for a spam-complaint rate
below 0.1 % and never reaching 0.3 % (Gmail: support.google.com/mail/answer/81126;
Yahoo: senders.yahooinc.com/best-practices); industry practice holds hard bounces under
2 % as healthy and 5–10 % as a list problem. Authentication failures mean SPF/DKIM are
broken, which both providers now reject for bulk mail.

**Smoothing (Bayesian prior).** Each rate is estimated as::

    smoothed = (bad + prior * neutral) / (n + prior)

where ``bad`` is the numerator count, ``n`` the denominator count, ``neutral`` the rate of
an ordinary healthy sender (below ``start``), and ``prior`` a number of pseudo-events
(``prior_events``, 100 by default; ``complaint_prior_events``, 1000, for complaints whose
rates are a hundred times smaller). With few events the prior dominates, so 1 bounce in
3 sends gives (1 + 100 × 0.005) / 103 ≈ 1.5 % — below the 2 % start, no points lost — and
the score moves towards the observed rate as evidence accumulates.

**Cost.** Each input costs ``weight × clamp((smoothed - start) / (full - start), 0, 1)``
points: nothing up to ``start``, linearly more up to its full weight at ``full``. Weights
are the damage one input alone can do (a 20 % hard-bounce rate alone leaves 40), so they
add up to more than 100; when the costs add up to more than 100 they are scaled down in
proportion to sum to exactly 100. So ``value = 100 - Σ contributions`` always, in 0..100.
Each cost is non-decreasing in its bad count, so the score is monotone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

INPUTS = ("hard_bounce", "complaint", "throttle", "deferral", "auth_failure")


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """Every threshold of the score; an operator may override any field."""

    prior_events: float = 100.0
    complaint_prior_events: float = 1000.0
    hard_bounce_neutral: float = 0.005
    hard_bounce_start: float = 0.02
    hard_bounce_full: float = 0.10
    hard_bounce_weight: float = 60.0
    complaint_neutral: float = 0.0002
    complaint_start: float = 0.001
    complaint_full: float = 0.003
    complaint_weight: float = 70.0
    throttle_neutral: float = 0.005
    throttle_start: float = 0.02
    throttle_full: float = 0.20
    throttle_weight: float = 25.0
    deferral_neutral: float = 0.02
    deferral_start: float = 0.05
    deferral_full: float = 0.30
    deferral_weight: float = 10.0
    auth_failure_neutral: float = 0.0
    auth_failure_start: float = 0.005
    auth_failure_full: float = 0.05
    auth_failure_weight: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"score.{f.name} must not be negative")
        for name in INPUTS:
            start, full = getattr(self, f"{name}_start"), getattr(self, f"{name}_full")
            if not start < full:
                raise ValueError(f"score.{name}_start ({start}) must be below _full ({full})")
            if getattr(self, f"{name}_weight") > 100.0:
                raise ValueError(f"score.{name}_weight must be at most 100")


@dataclass(frozen=True, slots=True)
class Score:
    value: float  # 0..100, 100 = spotless
    sample: int  # events it was computed from (attempts)
    rates: Mapping[str, float]  # the smoothed rates used
    contributions: Mapping[str, float]  # points taken off per input (>= 0); value == 100 - sum


def _fractions(counts: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """(bad, n) per input."""
    attempts = counts.get("attempts", 0)
    return {
        "hard_bounce": (counts.get("hard_bounce", 0), attempts),
        "complaint": (counts.get("complaint", 0), counts.get("delivered", 0)),
        "throttle": (counts.get("throttled", 0) + counts.get("reputation_block", 0), attempts),
        "deferral": (counts.get("deferred", 0), attempts),
        "auth_failure": (counts.get("auth_failure", 0), attempts),
    }


def smoothed_rate(bad: int, n: int, neutral: float, prior: float) -> float:
    """``(bad + prior * neutral) / (n + prior)``; ``neutral`` when there is nothing at all."""
    if n + prior <= 0:
        return neutral
    return (bad + prior * neutral) / (n + prior)


def cost(rate: float, start: float, full: float, weight: float) -> float:
    """Points lost: 0 up to ``start``, linear to ``weight`` at ``full``, ``weight`` beyond."""
    if rate <= start:
        return 0.0
    if rate >= full:
        return weight
    return weight * (rate - start) / (full - start)


def compute_score(counts: Mapping[str, int], s: ScoreSettings = ScoreSettings()) -> Score:
    """The score of one key's window counts (see the module docstring for the formula)."""
    rates: dict[str, float] = {}
    contributions: dict[str, float] = {}
    for name, (bad, n) in _fractions(counts).items():
        prior = s.complaint_prior_events if name == "complaint" else s.prior_events
        rate = smoothed_rate(bad, n, getattr(s, f"{name}_neutral"), prior)
        rates[name] = rate
        contributions[name] = cost(
            rate,
            getattr(s, f"{name}_start"),
            getattr(s, f"{name}_full"),
            getattr(s, f"{name}_weight"),
        )
    total = sum(contributions.values())
    if total > 100.0:
        contributions = {k: v * 100.0 / total for k, v in contributions.items()}
        total = sum(contributions.values())
    value = max(0.0, 100.0 - total)
    return Score(value, counts.get("attempts", 0), rates, contributions)
