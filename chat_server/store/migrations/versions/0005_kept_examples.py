"""Examples taken from resident messages: an admin's recorded decision to keep one after
its conversation is deleted (issue 16).

Revision ID: 0005_kept_examples
Revises: 0004_staff_security
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_kept_examples"
down_revision = "0004_staff_security"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_kept_examples",
        sa.Column("change_id", BigId, primary_key=True, autoincrement=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("staff_name", sa.String(120), nullable=False),
        sa.Column("reason", sa.String(400), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("change_id", name="pk_admin_kept_examples"),
    )


def downgrade() -> None:
    op.drop_table("admin_kept_examples")
