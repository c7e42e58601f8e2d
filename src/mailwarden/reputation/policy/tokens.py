"""A token bucket, pure: the bucket and the time come in, the new bucket and a wait go out.

The bucket refills at ``rate_per_hour / 3600`` tokens a second up to ``burst``. Taking
``n`` tokens succeeds when ``n`` are available. A request larger than ``burst`` (a message
with more recipients than the burst) would never fit, so it is granted from a *full* bucket
and leaves the bucket in debt (negative tokens): the long-run rate still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    updated: float  # epoch seconds of the last refill


def full(burst: float, now: float) -> Bucket:
    """A new bucket holding ``burst`` tokens."""
    return Bucket(burst, now)


def take(
    b: Bucket, rate_per_hour: float, burst: float, now: float, n: float = 1.0
) -> tuple[Bucket, float]:
    """Try to take ``n`` tokens at ``now``.

    Returns ``(bucket, 0.0)`` when taken, or ``(bucket, wait)`` with nothing taken and
    ``wait`` the seconds until enough tokens will be there (``inf`` when the rate is 0).
    Time going backwards refills nothing.
    """
    per_second = rate_per_hour / 3600.0
    elapsed = now - b.updated
    if elapsed > 0.0:
        tokens = min(burst, b.tokens + elapsed * per_second)
        updated = now
    else:
        tokens, updated = b.tokens, b.updated
    need = min(n, burst)
    if tokens >= need:
        return Bucket(tokens - n, updated), 0.0
    if per_second <= 0.0:
        return Bucket(tokens, updated), math.inf
    return Bucket(tokens, updated), (need - tokens) / per_second
