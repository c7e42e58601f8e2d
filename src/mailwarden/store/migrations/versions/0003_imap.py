"""IMAP: expunge tombstones, subscriptions, \\Recent, UIDVALIDITY counter, search index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("mailwarden.store.migrations")


def upgrade() -> None:
    op.create_table(
        "expunged",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_expunged_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expunged")),
    )
    op.create_index("ix_expunged_mailbox_modseq", "expunged", ["mailbox_id", "modseq"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("user_id", "name", name="uq_subscriptions_user_id_name"),
    )
    op.execute(
        "INSERT INTO subscriptions (user_id, name) "
        "SELECT user_id, name FROM mailboxes WHERE subscribed"
    )
    op.create_table(
        "search_text",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_text")),
        sa.UniqueConstraint("blob", name=op.f("uq_search_text_blob")),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("last_uidvalidity", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(
            sa.Column("first_recent_uid", sa.BigInteger(), nullable=False, server_default="1")
        )
        batch.drop_column("subscribed")
    op.execute(
        "UPDATE users SET last_uidvalidity = COALESCE("
        "(SELECT MAX(uidvalidity) FROM mailboxes WHERE mailboxes.user_id = users.id), 0)"
    )
    op.execute("UPDATE mailboxes SET first_recent_uid = uidnext")
    _text_index()


def _text_index() -> None:
    """Substring search needs a trigram index: FTS5 on SQLite, pg_trgm on PostgreSQL."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # External content: the text lives once, in search_text; triggers keep the index.
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5(headers, body, content='search_text', "
            "content_rowid='id', tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER search_text_ai AFTER INSERT ON search_text BEGIN "
            "INSERT INTO search_fts(rowid, headers, body) VALUES (new.id, new.headers, new.body); "
            "END"
        )
        op.execute(
            "CREATE TRIGGER search_text_ad AFTER DELETE ON search_text BEGIN "
            "INSERT INTO search_fts(search_fts, rowid, headers, body) "
            "VALUES ('delete', old.id, old.headers, old.body); END"
        )
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm unavailable (%s); IMAP text search will scan search_text", exc)
        return
    op.execute(
        "CREATE INDEX ix_search_text_headers_trgm ON search_text USING gin (headers gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_search_text_body_trgm ON search_text USING gin (body gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS search_text_ai")
        op.execute("DROP TRIGGER IF EXISTS search_text_ad")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table("search_text")
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(
            sa.Column("subscribed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.drop_column("first_recent_uid")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_uidvalidity")
    op.drop_table("subscriptions")
    op.drop_index("ix_expunged_mailbox_modseq", "expunged")
    op.drop_table("expunged")
