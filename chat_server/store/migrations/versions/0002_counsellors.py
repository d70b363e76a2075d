"""Counsellor accounts, audit log, callback requests, notes and topic tags (issue 4)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_counsellors"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_login_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staff_users"),
        sa.UniqueConstraint("username", name="uq_staff_users_username"),
    )

    op.create_table(
        "staff_sessions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("staff_id", BigId, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_staff_sessions_token_hash"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"], ondelete="CASCADE",
                                name="fk_staff_sessions_staff_id_staff_users"),
    )
    op.create_index("ix_staff_sessions_staff_id", "staff_sessions", ["staff_id"])
    op.create_index("ix_staff_sessions_expires_at", "staff_sessions", ["expires_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("staff_id", BigId, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("conversation_id", BigId, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"],
                                name="fk_audit_log_staff_id_staff_users"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_staff_id", "audit_log", ["staff_id"])
    op.create_index("ix_audit_log_conversation_id", "audit_log", ["conversation_id"])

    op.create_table(
        "callback_requests",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", BigId, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("preferred_time", sa.String(100), nullable=True),
        sa.Column("topic", sa.String(64), nullable=True),
        sa.Column("language", sa.String(2), nullable=True),
        sa.Column("consent_at", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("done_at", _utc(), nullable=True),
        sa.Column("done_by", BigId, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_callback_requests"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="SET NULL",
                                name="fk_callback_requests_conversation_id_conversations"),
        sa.ForeignKeyConstraint(["done_by"], ["staff_users.id"],
                                name="fk_callback_requests_done_by_staff_users"),
    )
    op.create_index("ix_callback_requests_conversation_id", "callback_requests", ["conversation_id"])
    op.create_index("ix_callback_requests_status", "callback_requests", ["status"])

    op.create_table(
        "conversation_notes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", BigId, nullable=False),
        sa.Column("staff_id", BigId, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_notes"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name="fk_conversation_notes_conversation_id_conversations"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"],
                                name="fk_conversation_notes_staff_id_staff_users"),
    )
    op.create_index("ix_conversation_notes_conversation_id", "conversation_notes", ["conversation_id"])

    op.create_table(
        "conversation_tags",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", BigId, nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("label", sa.String(80), nullable=True),
        sa.Column("staff_id", BigId, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_tags"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name="fk_conversation_tags_conversation_id_conversations"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"],
                                name="fk_conversation_tags_staff_id_staff_users"),
    )
    op.create_index("ix_conversation_tags_conversation_id", "conversation_tags", ["conversation_id"])
    op.create_index("ix_conversation_tags_tag", "conversation_tags", ["tag"])


def downgrade() -> None:
    op.drop_table("conversation_tags")
    op.drop_table("conversation_notes")
    op.drop_table("callback_requests")
    op.drop_table("audit_log")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
