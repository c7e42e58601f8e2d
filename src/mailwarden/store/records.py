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
    save_sent: bool = False


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
    first_recent_uid: int = 1
    messages: int = 0
    unseen: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What an IMAP session keeps of every message in the selected mailbox."""

    uid: int
    modseq: int
    flags: tuple[str, ...]
    size: int


@dataclass(frozen=True, slots=True)
class MailboxView:
    """A mailbox opened for a session: its state and every message, as parallel lists
    by ascending UID (10,000 messages are four lists, not 10,000 objects).

    ``recent``: the UID range [from, to) this session claimed as \\Recent (RFC 3501
    §2.3.2); (0, 0) when it claimed none (EXAMINE, or another session was first).
    """

    mailbox: MailboxRecord
    uids: list[int]
    modseqs: list[int]
    flags: list[tuple[str, ...]]
    sizes: list[int]
    recent: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """What changed in a mailbox after a mod-sequence (RFC 7162 §3.2.5.2 style)."""

    highestmodseq: int
    uidnext: int
    changed: list[MessageMeta]  # new or changed messages, ascending UID
    expunged: list[int]  # UIDs expunged, ascending
    recent: tuple[int, int] = (0, 0)  # UIDs [from, to) this session claimed as \\Recent
    exists: bool = True  # False once the mailbox was deleted or renamed away


@dataclass(frozen=True, slots=True)
class FlagChange:
    """The outcome of STORE: messages changed, and those UNCHANGEDSINCE refused."""

    changed: list[MessageMeta]
    unchanged: list[MessageMeta]  # matched but already had the result (RFC 7162: MODSEQ still)
    modified: list[int]  # UIDs failing UNCHANGEDSINCE (RFC 7162 §3.1.3 [MODIFIED])
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class BodyRef:
    """Where a message's bytes are, for FETCH."""

    uid: int
    blob: str
    size: int
    internal_date: datetime


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


# -- sending ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkimKeyRecord:
    id: int
    domain: str
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    private_key: str = field(repr=False)  # PKCS#8 PEM; never logged
    state: str = "active"  # active | retiring
    created_at: datetime | None = None
    retire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewQueued:
    """A message entering the outbound queue, with its remote recipients."""

    queue_id: str
    token: str
    blob: str
    size: int
    mail_from: str
    return_path: str
    sender_domain: str
    account: str
    message_id: str
    created_at: datetime
    expires_at: datetime
    recipients: tuple[str, ...]
    held: bool = False
    body: bytes | None = field(default=None, repr=False)  # inline body (blob is "")


# Recipient states. queued/deferred are pending; delivered/bounced are final.
PENDING_STATES = ("queued", "deferred")


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    id: int
    rcpt: str
    domain: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_code: int | None = None
    last_enhanced: str = ""
    last_text: str = ""
    claimed: bool = False
    held_seconds: int = 0  # time our own policy held it back (extends its lifetime)


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    queue_id: str
    token: str
    blob: str
    size: int
    mail_from: str
    return_path: str
    sender_domain: str
    account: str
    message_id: str
    held: bool
    created_at: datetime
    expires_at: datetime
    recipients: tuple[QueuedRecipient, ...] = ()
    body: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    """The state a recipient moves to after an attempt (or an operator action)."""

    recipient_id: int
    state: str
    attempts: int
    next_attempt_at: datetime
    code: int | None
    enhanced: str
    text: str
    at: datetime | None = None  # when it happened (updated_at); None: next_attempt_at


@dataclass(frozen=True, slots=True)
class SentToken:
    token: str
    queue_id: str
    mail_from: str
    account: str
    message_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReturnedBounce:
    at: datetime
    token: str
    queue_id: str
    recipient: str
    action: str
    status: str
    diagnostic: str
    remote_mta: str
    blob: str


@dataclass(frozen=True, slots=True)
class AuthFailureCount:
    key: str  # an IP or an account
    kind: str  # "ip" | "account"
    failures: int
    last: datetime
