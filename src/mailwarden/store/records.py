"""Plain values that cross the store boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DomainRecord:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    address: str
    domain_id: int
    password_hash: str
    quota_bytes: int
    used_bytes: int
    disabled: bool


@dataclass(frozen=True, slots=True)
class AliasRecord:
    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    id: int
    user_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool
    messages: int = 0
    unseen: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """Decoded header fields kept in the database for listing and search."""

    message_id: str = ""
    subject: str = ""
    from_addr: str = ""
    to_addr: str = ""
    cc_addr: str = ""
    in_reply_to: str = ""
    date: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    blob: str
    size: int
    internal_date: datetime
    headers: HeaderSummary
    mail_from: str = ""
    auth_results: str = ""
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Put ``message`` into ``user_id``'s mailbox with this special-use role (or name)."""

    user_id: int
    rcpt_to: str
    mailbox: str  # a special-use role such as "\\Inbox"/"\\Junk", or a mailbox name
    enforce_quota: bool = True


@dataclass(frozen=True, slots=True)
class Delivered:
    user_id: int
    mailbox_id: int
    uid: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    mailbox_id: int
    uid: int
    modseq: int
    blob: str
    size: int
    internal_date: datetime
    flags: tuple[str, ...]
    mail_from: str
    rcpt_to: str
    headers: HeaderSummary
    auth_results: str
    extra: dict[str, str] = field(default_factory=dict)
