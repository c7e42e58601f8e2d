"""Table definitions (SQLAlchemy Core). Migrations in migrations/versions must match these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    Column("created_at", DateTime(timezone=True), nullable=False),
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
    Column("subscribed", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("user_id", "name", name="uq_mailboxes_user_id_name"),
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
