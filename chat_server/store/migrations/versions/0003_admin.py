"""Admin: content change history, model registry, inbox, statistics (issue 5).

Revision ID: 0003_admin
Revises: 0002_counsellors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_admin"
down_revision = "0002_counsellors"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonValue = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column("id", BigId, primary_key=True, autoincrement=True)


def _staff(prefix: str = "staff") -> list[sa.Column]:
    return [sa.Column(f"{prefix}_id", sa.String(64), nullable=False),
            sa.Column(f"{prefix}_name", sa.String(120), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "admin_content_changes",
        _id(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *_staff(),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
        sa.Column("item", JsonValue, nullable=False),
        sa.Column("summary", sa.String(400), nullable=False),
        sa.Column("before", JsonValue, nullable=True),
        sa.Column("after", JsonValue, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("undo_of", BigId, nullable=True),
        sa.Column("undone_by", BigId, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_content_changes"),
    )

    op.create_table(
        "admin_training_runs",
        _id(),
        sa.Column("running_slot", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("started_by_name", sa.String(120), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(24), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("timings", JsonValue, nullable=True),
        sa.Column("evaluation", JsonValue, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_training_runs"),
        sa.UniqueConstraint("running_slot", name="uq_admin_training_runs_running_slot"),
    )

    op.create_table(
        "admin_bot_models",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trained_by_name", sa.String(120), nullable=True),
        sa.Column("examples", sa.Integer(), nullable=True),
        sa.Column("evaluation", JsonValue, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_admin_bot_models"),
    )

    op.create_table(
        "admin_model_activations",
        _id(),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("previous_model", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *_staff(),
        sa.Column("swap_secs", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_model_activations"),
    )
    op.create_index("ix_admin_model_activations_model_name", "admin_model_activations", ["model_name"])

    op.create_table(
        "message_intent_guesses",
        sa.Column("message_id", BigId, nullable=False),
        sa.Column("guesses", JsonValue, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_intent_guesses"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_message_intent_guesses_message_id_messages"),
    )

    op.create_table(
        "admin_inbox_decisions",
        sa.Column("message_id", BigId, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("change_id", BigId, nullable=True),
        *_staff(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_admin_inbox_decisions"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_admin_inbox_decisions_message_id_messages"),
    )
    op.create_index("ix_admin_inbox_decisions_change_id", "admin_inbox_decisions", ["change_id"])

    op.create_table(
        "stats_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(40), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "measure", "key", name="pk_stats_daily"),
    )

    op.create_table(
        "admin_retention_runs",
        _id(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("conversations_deleted", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_retention_runs"),
    )


def downgrade() -> None:
    for table in ("admin_retention_runs", "stats_daily", "admin_inbox_decisions",
                  "message_intent_guesses", "admin_model_activations", "admin_bot_models",
                  "admin_training_runs", "admin_content_changes"):
        op.drop_table(table)
