"""Table definitions (SQLAlchemy Core). Migrations in migrations/versions must match these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    # lower-cased "local@domain"; the lookup key
    Column("address", String(320), nullable=False, unique=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("quota_bytes", BigInteger, nullable=False, default=0),  # 0 = unlimited
    Column("used_bytes", BigInteger, nullable=False, default=0),
    Column("disabled", Boolean, nullable=False, default=False),
    # file a copy of submitted mail in Sent (for clients that do not save their own)
    Column("save_sent", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # RFC 3501 §2.3.1.1: the last UIDVALIDITY handed out to one of this user's mailboxes;
    # a new mailbox gets a larger one, so a re-created name never reuses a value.
    Column("last_uidvalidity", BigInteger, nullable=False, default=0, server_default="0"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True),
    # "local@domain" or "@domain" (catch-all), lower-cased
    Column("source", String(320), nullable=False),
    Column("destination", String(320), nullable=False),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "destination", name="uq_aliases_source_destination"),
    Index("ix_aliases_source", "source"),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("special_use", String(32), nullable=True),  # RFC 6154: \Sent, \Junk, ...
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False, default=1),
    Column("highestmodseq", BigInteger, nullable=False, default=1),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # RFC 3501 §2.3.2 \Recent: UIDs from here on have not been seen by any session yet;
    # the first session to select (or be told of) them claims them.
    Column("first_recent_uid", BigInteger, nullable=False, default=1, server_default="1"),
    UniqueConstraint("user_id", "name", name="uq_mailboxes_user_id_name"),
)

# RFC 7162 §3.2.5.2: QRESYNC reports expunged UIDs since a mod-sequence (VANISHED); a
# tombstone per expunged message, with the mod-sequence of its expunge, makes that exact.
expunged = Table(
    "expunged",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Index("ix_expunged_mailbox_modseq", "mailbox_id", "modseq"),
)

# RFC 3501 §6.3.6: subscriptions are names, kept even when the mailbox is gone.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(1024), nullable=False),
    UniqueConstraint("user_id", "name", name="uq_subscriptions_user_id_name"),
)

# The search index: decoded header and body text per stored body (blob), so SEARCH
# HEADER/BODY/TEXT never reads message files. SQLite adds an FTS5 trigram index over it
# (search_fts, created in migration 0003), PostgreSQL pg_trgm GIN indexes.
search_text = Table(
    "search_text",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("blob", String(64), nullable=False, unique=True),
    Column("headers", Text, nullable=False),  # "Name: decoded value\n" per field
    Column("body", Text, nullable=False),  # decoded text of the text/* parts
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Column("blob", String(64), nullable=False),  # sha256 hex of the stored bytes
    Column("size", BigInteger, nullable=False),
    Column("internal_date", DateTime(timezone=True), nullable=False),
    Column("flags", Text, nullable=False, default=""),  # space-separated, e.g. "\\Seen $Junk"
    Column("mail_from", String(320), nullable=False, default=""),
    Column("rcpt_to", String(320), nullable=False, default=""),
    # parsed headers, decoded (RFC 2047), for listing and search
    Column("message_id", String(998), nullable=False, default=""),
    Column("subject", Text, nullable=False, default=""),
    Column("from_addr", Text, nullable=False, default=""),
    Column("to_addr", Text, nullable=False, default=""),
    Column("cc_addr", Text, nullable=False, default=""),
    Column("in_reply_to", Text, nullable=False, default=""),
    Column("date_header", DateTime(timezone=True), nullable=True),
    Column("auth_results", Text, nullable=False, default=""),
    UniqueConstraint("mailbox_id", "uid", name="uq_messages_mailbox_id_uid"),
    Index("ix_messages_mailbox_modseq", "mailbox_id", "modseq"),
    Index("ix_messages_blob", "blob"),
)

# -- sending (migration 0002) --------------------------------------------------------

dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("selector", String(63), nullable=False),
    Column("algorithm", String(32), nullable=False),  # rsa-sha256 | ed25519-sha256
    Column("private_key", Text, nullable=False),  # PKCS#8 PEM
    Column("state", String(16), nullable=False),  # active | retiring
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retire_at", DateTime(timezone=True), nullable=True),  # retiring: unpublish after
    UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_domain_id_selector"),
)

queue_messages = Table(
    "queue_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_id", String(24), nullable=False, unique=True),
    Column("token", String(32), nullable=False, unique=True),  # VERP token in Return-Path
    Column("blob", String(64), nullable=False),  # "" when the body is inline
    # Small bodies live in the row: committed with it (one fsync, not three), read with
    # the claim, and gone with the message; larger ones go to the blob store.
    Column("body", LargeBinary, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("mail_from", String(320), nullable=False),  # as submitted; "" = null sender
    Column("return_path", String(320), nullable=False),  # what we send in MAIL FROM
    Column("sender_domain", String(255), nullable=False),
    Column("account", String(320), nullable=False),
    Column("message_id", String(998), nullable=False),
    Column("held", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "message_id", Integer, ForeignKey("queue_messages.id", ondelete="CASCADE"), nullable=False
    ),
    Column("rcpt", String(320), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # queued | deferred | delivered | bounced
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", String(40), nullable=True),  # the runner delivering it right now
    Column("last_code", Integer, nullable=True),
    Column("last_enhanced", String(16), nullable=False),
    Column("last_text", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Seconds our own reputation policy held this recipient back (breaker, warm-up cap,
    # paused lane): they extend its lifetime, up to reputation.max_hold_extension.
    Column("held_seconds", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_queue_recipients_due", "state", "next_attempt_at"),
    Index("ix_queue_recipients_message_id", "message_id"),
)

delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("queue_id", String(24), nullable=False),
    Column("message_id", String(998), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("recipient_domain", String(255), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("sender_domain", String(255), nullable=False),
    Column("account", String(320), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("code", Integer, nullable=True),
    Column("enhanced", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("mx_host", String(255), nullable=False),
    Column("mx_ip", String(45), nullable=False),
    Column("source_ip", String(45), nullable=False),
    Column("tls", Boolean, nullable=False),
    Column("tls_version", String(16), nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("route", String(255), nullable=False),
    # The mailbox provider the recipient domain's MX belongs to, and the reply's class
    # (reputation/classify.py): the reputation engine's windows are rebuilt from these.
    Column("provider", String(64), nullable=False, default="", server_default=""),
    Column("reply_class", String(24), nullable=False, default="", server_default=""),
    # Time-range queries, alone or along one dimension: (dimension, at) indexes.
    Index("ix_delivery_events_at", "at"),
    Index("ix_delivery_events_outcome_at", "outcome", "at"),
    Index("ix_delivery_events_recipient_domain_at", "recipient_domain", "at"),
    Index("ix_delivery_events_sender_domain_at", "sender_domain", "at"),
    Index("ix_delivery_events_account_at", "account", "at"),
    Index("ix_delivery_events_mx_host_at", "mx_host", "at"),
    Index("ix_delivery_events_mx_ip_at", "mx_ip", "at"),
    Index("ix_delivery_events_source_ip_at", "source_ip", "at"),
    Index("ix_delivery_events_recipient_at", "recipient", "at"),
    Index("ix_delivery_events_queue_id", "queue_id"),
    Index("ix_delivery_events_provider_at", "provider", "at"),
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ip", String(45), nullable=False),
    Column("account", String(320), nullable=False),
    Column("service", String(16), nullable=False),  # submission | imap | http
    Index("ix_auth_failures_ip_at", "ip", "at"),
    Index("ix_auth_failures_account_at", "account", "at"),
)

returned_bounces = Table(
    "returned_bounces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("token", String(32), nullable=False),
    Column("queue_id", String(24), nullable=False),  # "" if the token is unknown/expired
    Column("recipient", String(320), nullable=False),
    Column("action", String(16), nullable=False),  # RFC 3464 Action: failed, delayed, ...
    Column("status", String(16), nullable=False),
    Column("diagnostic", Text, nullable=False),
    Column("remote_mta", String(255), nullable=False),
    Column("blob", String(64), nullable=False),
    Index("ix_returned_bounces_at", "at"),
    Index("ix_returned_bounces_queue_id", "queue_id"),
)

sent_tokens = Table(
    "sent_tokens",
    metadata,
    # VERP token → the message it was sent with; kept after the message leaves the queue,
    # so a DSN that arrives days later can still be tied to it.
    Column("token", String(32), primary_key=True),
    Column("queue_id", String(24), nullable=False),
    Column("mail_from", String(320), nullable=False),
    Column("account", String(320), nullable=False),
    Column("message_id", String(998), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rcpts", Integer, nullable=False, default=1, server_default="1"),
    Index("ix_sent_tokens_account_created_at", "account", "created_at"),
)

# -- reputation engine -------------------------------------------------------------------

reputation_state = Table(
    "reputation_state",
    metadata,
    # One row per lane / identity / tenant: its policy state as JSON (rate, breaker,
    # warm-up, pause), so restarts keep it and several nodes can share it.
    Column("key", String(600), primary_key=True),
    Column("kind", String(16), nullable=False),  # lane | domain | ip | tenant | provider
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

reputation_actions = Table(
    "reputation_actions",
    metadata,
    # The remediation log: every automatic action and every operator override.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(320), nullable=False),  # "auto" or the operator's name
    Column("kind", String(32), nullable=False),  # throttle, breaker_open, pause, ...
    Column("target", String(600), nullable=False),  # lane:..., tenant:..., domain:...
    Column("reason", Text, nullable=False),
    Column("inputs", Text, nullable=False),  # JSON: the figures the decision used
    Index("ix_reputation_actions_at", "at"),
    Index("ix_reputation_actions_target_at", "target", "at"),
)

reputation_alerts = Table(
    "reputation_alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    # type + target: an alert that is raised again while open is counted, not repeated.
    Column("dedupe", String(700), nullable=False),
    Column("type", String(32), nullable=False),  # breaker_open, score_drop, guardrail, ...
    Column("severity", String(16), nullable=False),  # info | warning | critical
    Column("target", String(600), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),  # open | acknowledged | resolved
    Column("count", Integer, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("acked_by", String(320), nullable=False),
    Column("acked_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(320), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("ix_reputation_alerts_dedupe_status", "dedupe", "status"),
    Index("ix_reputation_alerts_status_last_at", "status", "last_at"),
)

reputation_scores = Table(
    "reputation_scores",
    metadata,
    # Score history for charts: one row per subject per recomputation.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("subject", String(600), nullable=False),  # domain:example.com, ip:..., tenant:...
    Column("value", Float, nullable=False),
    Column("sample", Integer, nullable=False),
    Column("contributions", Text, nullable=False),  # JSON
    Index("ix_reputation_scores_subject_at", "subject", "at"),
)
