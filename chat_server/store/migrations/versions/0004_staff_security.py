"""Staff sign-in fit for social welfare data (issue 16): a second factor (TOTP and
recovery codes), sessions with an idle deadline, a sign-in stage and a time of the
last re-authentication, single sign-on accounts; no more per-account lock columns
(sign-in is throttled with growing delays outside the database).

Revision ID: 0004_staff_security
Revises: 0003_admin
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_staff_security"
down_revision = "0003_admin"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("totp_enrolled_at", _utc(), nullable=True))
        batch.add_column(sa.Column("external_subject", sa.String(255), nullable=True))
        batch.alter_column("password_hash", existing_type=sa.String(255), nullable=True)
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")
        batch.create_unique_constraint("uq_staff_users_external_subject", ["external_subject"])

    with op.batch_alter_table("staff_sessions") as batch:
        batch.add_column(sa.Column("stage", sa.String(16), nullable=False, server_default="full"))
        batch.add_column(sa.Column("method", sa.String(16), nullable=False, server_default="password"))
        batch.add_column(sa.Column("last_seen_at", _utc(), nullable=True))
        batch.add_column(sa.Column("reauth_at", _utc(), nullable=True))
        batch.add_column(sa.Column("pending_totp_secret", sa.String(64), nullable=True))
    # Sessions of before have no second factor: they end now.
    op.execute("DELETE FROM staff_sessions")
    with op.batch_alter_table("staff_sessions") as batch:
        batch.alter_column("stage", server_default=None, existing_type=sa.String(16), existing_nullable=False)
        batch.alter_column("method", server_default=None, existing_type=sa.String(16), existing_nullable=False)

    op.create_table(
        "staff_recovery_codes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("staff_id", BigId, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("used_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staff_recovery_codes"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"], ondelete="CASCADE",
                                name="fk_staff_recovery_codes_staff_id_staff_users"),
    )
    op.create_index("ix_staff_recovery_codes_staff_id", "staff_recovery_codes", ["staff_id"])

    op.create_table(
        "staff_sso_states",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("next_path", sa.String(500), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_sso_states"),
        sa.UniqueConstraint("state_hash", name="uq_staff_sso_states_state_hash"),
    )
    op.create_index("ix_staff_sso_states_created_at", "staff_sso_states", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_staff_sso_states_created_at", table_name="staff_sso_states")
    op.drop_table("staff_sso_states")
    op.drop_index("ix_staff_recovery_codes_staff_id", table_name="staff_recovery_codes")
    op.drop_table("staff_recovery_codes")
    op.execute("DELETE FROM staff_sessions")
    with op.batch_alter_table("staff_sessions") as batch:
        batch.drop_column("pending_totp_secret")
        batch.drop_column("reauth_at")
        batch.drop_column("last_seen_at")
        batch.drop_column("method")
        batch.drop_column("stage")
    op.execute("UPDATE staff_users SET password_hash = '!' WHERE password_hash IS NULL")  # no password
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_constraint("uq_staff_users_external_subject", type_="unique")
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", _utc(), nullable=True))
        batch.alter_column("password_hash", existing_type=sa.String(255), nullable=False)
        batch.drop_column("external_subject")
        batch.drop_column("totp_enrolled_at")
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
