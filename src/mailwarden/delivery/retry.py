"""What happens to a recipient after an attempt: pure, from the reply, the attempt count and time.

RFC 5321 §4.5.4.1: retry at least 30 minutes apart in general and keep trying 4-5 days;
our defaults start sooner (5 min) for greylisting and double up to 4 h, over 5 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mailwarden.config.schema import DeliverySettings
from mailwarden.core.events import Outcome

EXPIRED_STATUS = "4.4.7"  # RFC 3463: delivery time expired


@dataclass(frozen=True, slots=True)
class Decision:
    state: str  # delivered | deferred | bounced
    outcome: Outcome
    next_attempt_at: datetime
    status: str  # RFC 3463 code for a DSN
    expired: bool = False
    reason: str = ""


def reply_class(code: int | None, enhanced: str) -> str:
    """ "success", "temporary" or "permanent". No reply (code None) counts as temporary
    unless the enhanced code says permanent (e.g. 5.1.10 null MX, RFC 7505)."""
    if code is not None:
        if 200 <= code < 400:
            return "success"
        return "permanent" if code >= 500 else "temporary"
    return "permanent" if enhanced.startswith("5.") else "temporary"


def retry_delay(attempts: int, s: DeliverySettings) -> float:
    """Seconds to wait after ``attempts`` failed tries (1 → retry_initial)."""
    delay = s.retry_initial * s.retry_factor ** max(0, attempts - 1)
    return float(min(delay, s.retry_max))


def decide(
    code: int | None,
    enhanced: str,
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    s: DeliverySettings,
    held_seconds: float = 0.0,
) -> Decision:
    """``attempts`` counts this attempt. A deferral that would retry past the message's
    lifetime bounces now (RFC 5321 §4.5.4.1 gives up after "4-5 days"). ``held_seconds``,
    the time our own reputation policy held the recipient back (already capped by the
    caller), extends the lifetime: our throttling must not bounce mail early."""
    kind = reply_class(code, enhanced)
    if kind == "success":
        return Decision("delivered", Outcome.DELIVERED, now, enhanced or "2.0.0")
    if kind == "permanent":
        return Decision("bounced", Outcome.BOUNCED, now, _status(enhanced, code, "5.0.0"))
    nxt = now + timedelta(seconds=retry_delay(attempts, s))
    if nxt > created_at + timedelta(seconds=s.max_lifetime + held_seconds):
        reason = f"gave up after {attempts} attempts over {_age(created_at, now)}"
        return Decision("bounced", Outcome.BOUNCED, now, EXPIRED_STATUS, True, reason)
    return Decision("deferred", Outcome.DEFERRED, nxt, _status(enhanced, code, "4.0.0"))


def _status(enhanced: str, code: int | None, default: str) -> str:
    if enhanced and code is not None and enhanced[0] != str(code)[0]:
        return default  # RFC 3463 §2: the class must agree with the reply code
    return enhanced or default


def _age(created: datetime, now: datetime) -> str:
    hours = (now - created).total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
