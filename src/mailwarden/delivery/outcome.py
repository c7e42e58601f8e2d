"""One attempt's replies → recipient updates, delivery events and bounces (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mailwarden.config.schema import DeliverySettings
from mailwarden.core.events import DeliveryEvent, Outcome
from mailwarden.delivery.retry import Decision, decide
from mailwarden.store.records import QueuedMessage, QueuedRecipient, RecipientUpdate


@dataclass(frozen=True, slots=True)
class Reply:
    """A remote reply for one recipient; code None when no reply came (network, DNS)."""

    code: int | None
    enhanced: str
    text: str
    # A 5xx *greeting* (or EHLO refusal) says "not from you, not now", not "this recipient
    # is bad": like Postfix (smtp_skip_5xx_greeting) we try the next MX and defer.
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class Path:
    """How the attempt went out (all empty when it never connected)."""

    route: str = "mx"
    mx_host: str = ""
    mx_ip: str = ""
    source_ip: str = ""
    tls: bool = False
    tls_version: str = ""


@dataclass(frozen=True, slots=True)
class Bounced:
    recipient: QueuedRecipient
    reply: Reply
    decision: Decision
    mx_host: str


@dataclass
class Outcomes:
    updates: list[RecipientUpdate]
    events: list[DeliveryEvent]
    bounced: list[Bounced]


def attempt_outcomes(
    msg: QueuedMessage,
    rcpts: Sequence[QueuedRecipient],
    replies: Mapping[str, Reply],
    path: Path,
    *,
    latency_ms: int,
    now: datetime,
    settings: DeliverySettings,
    max_hold: float = 0.0,
) -> Outcomes:
    """``max_hold``: how much of the time our own policy held a recipient back may extend
    its lifetime (reputation.max_hold_extension)."""
    out = Outcomes([], [], [])
    for r in rcpts:
        reply = replies.get(r.rcpt) or Reply(None, "4.3.0", "no result for this recipient")
        attempt = r.attempts + 1
        d = decide(
            None if reply.skipped else reply.code,
            "4.4.1" if reply.skipped else reply.enhanced,
            attempts=attempt,
            created_at=msg.created_at,
            now=now,
            s=settings,
            held_seconds=min(float(r.held_seconds), max_hold),
        )
        text = reply.text if not d.expired else f"{reply.text} ({d.reason})".strip()
        out.updates.append(
            RecipientUpdate(
                r.id, d.state, attempt, d.next_attempt_at, reply.code, reply.enhanced, text, now
            )
        )
        out.events.append(_event(msg, r, reply, path, d.outcome, attempt, latency_ms, now))
        # RFC 3461 §5.2.2 / RFC 5321 §4.5.5: no DSN for a null sender.
        if d.state == "bounced" and msg.mail_from:
            out.bounced.append(Bounced(r, reply, d, path.mx_host))
    return out


def _event(
    msg: QueuedMessage,
    r: QueuedRecipient,
    reply: Reply,
    path: Path,
    outcome: Outcome,
    attempt: int,
    latency_ms: int,
    now: datetime,
) -> DeliveryEvent:
    return DeliveryEvent(
        at=now,
        outcome=outcome,
        queue_id=msg.queue_id,
        message_id=msg.message_id,
        recipient=r.rcpt,
        recipient_domain=r.domain,
        sender=msg.mail_from,
        sender_domain=msg.sender_domain,
        account=msg.account,
        attempt=attempt,
        code=reply.code,
        enhanced=reply.enhanced,
        text=reply.text,
        mx_host=path.mx_host,
        mx_ip=path.mx_ip,
        source_ip=path.source_ip,
        tls=path.tls,
        tls_version=path.tls_version,
        latency_ms=latency_ms,
        route=path.route,
    )
