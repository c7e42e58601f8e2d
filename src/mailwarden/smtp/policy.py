"""Pure decisions for inbound mail: facts in, a decision with its reasons out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mailwarden.config.schema import InboundSettings
from mailwarden.core import replies
from mailwarden.core.replies import Reply


class Action(Enum):
    INBOX = "inbox"
    JUNK = "junk"
    REJECT = "reject"
    TEMPFAIL = "tempfail"


@dataclass(frozen=True, slots=True)
class DmarcFacts:
    result: str  # pass|fail|none|temperror|permerror
    policy: str  # none|quarantine|reject (after sp= and pct=)
    from_domain: str


@dataclass(frozen=True, slots=True)
class MessageDecision:
    action: Action
    reply: Reply
    reasons: tuple[str, ...]


def decide_message(dmarc: DmarcFacts, settings: InboundSettings) -> MessageDecision:
    """What to do with an authenticated-or-not inbound message (RFC 7489 §6.7).

    DMARC temperror is accepted to the inbox rather than deferred: a sender whose DNS
    is flaky should not lose mail, and nothing failed authentication.
    """
    if dmarc.result != "fail":
        return MessageDecision(
            Action.INBOX, replies.QUEUED, (f"dmarc={dmarc.result} for {dmarc.from_domain}",)
        )
    why = f"dmarc=fail p={dmarc.policy} for {dmarc.from_domain}"
    if dmarc.policy == "reject":
        if settings.dmarc_reject == "reject":
            return MessageDecision(
                Action.REJECT,
                replies.DMARC_REJECT.with_text(f"Rejected by DMARC policy of {dmarc.from_domain}"),
                (why, "inbound.dmarc_reject=reject"),
            )
        if settings.dmarc_reject == "quarantine":
            return MessageDecision(
                Action.JUNK, replies.QUEUED, (why, "inbound.dmarc_reject=quarantine")
            )
        return MessageDecision(Action.INBOX, replies.QUEUED, (why, "inbound.dmarc_reject=accept"))
    if dmarc.policy == "quarantine" and settings.dmarc_quarantine == "quarantine":
        return MessageDecision(Action.JUNK, replies.QUEUED, (why, "inbound.dmarc_quarantine"))
    return MessageDecision(Action.INBOX, replies.QUEUED, (why,))
