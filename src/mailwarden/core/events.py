"""The one event record: what happened to one recipient of one message, along every dimension.

Delivery emits one per attempt per recipient; the reputation engine, the dashboard, alerts
and webhooks read them. Fields are plain values so the record can be stored, sent as JSON
and aggregated without knowing where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    # Feedback that arrives after delivery (reputation/feedback): a bounce DSN for mail a
    # remote server had accepted, and an abuse complaint (ARF).
    ASYNC_BOUNCE = "async_bounce"
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    at: datetime
    outcome: Outcome
    queue_id: str  # our queue id, shown in logs and `mailwarden queue`
    message_id: str  # the Message-ID header, without angle brackets
    recipient: str
    recipient_domain: str
    sender: str  # envelope sender as submitted ("" for a DSN)
    sender_domain: str  # RFC5322.From domain (what DKIM d= signs)
    account: str  # the authenticated account, or "" (relay network, system mail)
    attempt: int  # 1 for the first try
    code: int | None = None  # the remote reply, in full; None when no reply came
    enhanced: str = ""
    text: str = ""
    mx_host: str = ""  # MX host name, or the transport's host
    mx_ip: str = ""
    source_ip: str = ""
    tls: bool = False
    tls_version: str = ""
    latency_ms: int = 0  # from connect (or reuse) to the final reply for this recipient
    route: str = "mx"  # "mx", a transport URL without credentials, or "local"
    provider: str = ""  # who runs the recipient domain's mail (reputation/providers.py)
    reply_class: str = ""  # the reply's class (reputation/classify.py)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, the time as ISO 8601 (for JSON)."""
        d = {name: getattr(self, name) for name in FIELDS}
        d["at"] = self.at.isoformat()
        d["outcome"] = self.outcome.value
        return d


FIELDS = tuple(f.name for f in fields(DeliveryEvent))
