"""Checks and completions for a submitted message (pure): RFC 6409 §8, RFC 5322 §3.6.

A message submitted by a person or an app must have exactly one From whose address the
account may use; the MSA adds Date and Message-ID when they are missing (RFC 6409 §8.2,
§8.3). Header bytes outside ASCII need SMTPUTF8 (RFC 6532 §3, RFC 6531 §3.7.5).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, getaddresses

from mailwarden.core.address import Address
from mailwarden.core.errors import InvalidAddress
from mailwarden.core.replies import Reply

Headers = Sequence[tuple[str, str]]

NO_FROM = Reply(550, "5.6.0", "Message has no From header (RFC 5322 §3.6)")
MANY_FROM = Reply(550, "5.6.0", "Message has more than one From header (RFC 5322 §3.6)")
BAD_FROM = Reply(550, "5.6.0", "From header has no valid address")
EIGHT_BIT_HEADER = Reply(
    550, "5.6.7", "Non-ASCII header needs SMTPUTF8 (RFC 6531); use MIME encoded-words"
)
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")


@dataclass(frozen=True, slots=True)
class Checked:
    """A submission that passed: the RFC5322.From address (what DKIM signs for)."""

    from_address: Address


def from_addresses(headers: Headers) -> list[str]:
    values = [v for n, v in headers if n.lower() == "from"]
    return [addr for _name, addr in getaddresses(values) if addr]


def check_submission(raw: bytes, headers: Headers, *, smtputf8: bool) -> Checked | Reply:
    """Is this message well-formed enough to sign and send? Pure."""
    if not smtputf8 and not _head(raw).isascii():
        return EIGHT_BIT_HEADER
    froms = [v for n, v in headers if n.lower() == "from"]
    if not froms:
        return NO_FROM
    if len(froms) > 1:
        return MANY_FROM
    addrs = from_addresses(headers)
    if len(addrs) != 1:
        # RFC 5322 §3.6.2: several authors need a Sender; we sign for one, so refuse.
        return BAD_FROM.with_text("From must hold exactly one address")
    try:
        return Checked(Address.parse(addrs[0]))
    except InvalidAddress as exc:
        return BAD_FROM.with_text(f"From header address is invalid: {exc}")


def complete_headers(
    raw: bytes, headers: Headers, *, domain: str, now: datetime
) -> tuple[bytes, list[tuple[str, str]]]:
    """Add Date and Message-ID when missing (RFC 6409 §8.2, §8.3); returns the message
    and its header fields (so nobody parses them again)."""
    names = {n.lower() for n, _v in headers}
    added: list[tuple[str, str]] = []
    if "date" not in names:
        added.append(("Date", format_datetime(now)))
    if "message-id" not in names:
        added.append(("Message-ID", f"<{secrets.token_hex(12)}@{domain}>"))
    extra = "".join(f"{n}: {v}\r\n" for n, v in added).encode()
    return extra + raw, [*added, *headers]


def message_id(headers: Headers) -> str:
    for n, v in headers:
        if n.lower() == "message-id":
            return v.strip().strip("<>").strip()[:998]
    return ""


def _head(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end]
