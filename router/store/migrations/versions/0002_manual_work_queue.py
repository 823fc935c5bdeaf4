"""manual work queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:24:46.994167
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manual_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column(
            "dispatch",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("manual_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_manual_items_department_state", ["department", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("manual_items", schema=None) as batch_op:
        batch_op.drop_index("ix_manual_items_department_state")

    op.drop_table("manual_items")
