"""reputation engine: lane state, remediation log, alerts, score history; event provider/class

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("reply_class", sa.String(length=24), nullable=False, server_default="")
        )
        batch_op.create_index("ix_delivery_events_provider_at", ["provider", "at"], unique=False)
    with op.batch_alter_table("queue_recipients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_seconds", sa.Integer(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("sent_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rcpts", sa.Integer(), nullable=False, server_default="1"))
        batch_op.create_index(
            "ix_sent_tokens_account_created_at", ["account", "created_at"], unique=False
        )

    op.create_table(
        "reputation_state",
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_reputation_state")),
    )
    op.create_table(
        "reputation_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reputation_actions")),
    )
    with op.batch_alter_table("reputation_actions", schema=None) as batch_op:
        batch_op.create_index("ix_reputation_actions_at", ["at"], unique=False)
        batch_op.create_index("ix_reputation_actions_target_at", ["target", "at"], unique=False)
    op.create_table(
        "reputation_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe", sa.String(length=700), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acked_by", sa.String(length=320), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=320), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reputation_alerts")),
    )
    with op.batch_alter_table("reputation_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reputation_alerts_dedupe_status", ["dedupe", "status"], unique=False
        )
        batch_op.create_index(
            "ix_reputation_alerts_status_last_at", ["status", "last_at"], unique=False
        )
    op.create_table(
        "reputation_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=600), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("sample", sa.Integer(), nullable=False),
        sa.Column("contributions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reputation_scores")),
    )
    with op.batch_alter_table("reputation_scores", schema=None) as batch_op:
        batch_op.create_index("ix_reputation_scores_subject_at", ["subject", "at"], unique=False)


def downgrade() -> None:
    op.drop_table("reputation_scores")
    op.drop_table("reputation_alerts")
    op.drop_table("reputation_actions")
    op.drop_table("reputation_state")
    with op.batch_alter_table("sent_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_sent_tokens_account_created_at")
        batch_op.drop_column("rcpts")
    with op.batch_alter_table("queue_recipients", schema=None) as batch_op:
        batch_op.drop_column("held_seconds")
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_events_provider_at")
        batch_op.drop_column("reply_class")
        batch_op.drop_column("provider")
