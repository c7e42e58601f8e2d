"""The record of one automatic decision: what changed, in one sentence, and the figures used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

KINDS = frozenset(
    {
        "throttle",
        "ramp",
        "retry_after",
        "breaker_open",
        "breaker_half_open",
        "breaker_close",
        "warmup_step",
        "warmup_hold",
        "warmup_back",
        "guardrail_defer",
        "guardrail_pause",
        "warmup_start",  # the engine: a new lane starts its schedule
    }
)


@dataclass(frozen=True, slots=True)
class Action:
    """One state change made by a policy function, with its reason and inputs.

    ``kind`` is one of :data:`KINDS`; ``reason`` is one human sentence with the numbers
    (``"421 4.7.28 throttled: rate 3600 -> 1800 msg/h"``); ``inputs`` are the figures the
    decision used, for the remediation log and ``mailwarden reputation explain``.
    """

    kind: str
    reason: str
    inputs: Mapping[str, float | int | str]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}")


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp to the second (for reasons)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``12m``, ``2h``, ``2h 30m``, ``3d``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, rest = divmod(s, 86400)
    h = rest // 3600
    return f"{d}d {h}h" if h else f"{d}d"


def pct(rate: float) -> str:
    """A rate as a percentage with enough digits for complaint rates (``0.12%``)."""
    return f"{rate * 100:.2f}%" if rate < 0.1 else f"{rate * 100:.1f}%"
