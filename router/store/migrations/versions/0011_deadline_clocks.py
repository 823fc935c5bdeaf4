"""deadline clocks: item and bundle clocks, the commitments' due date, alerts raised once

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Frozen here as the migration wrote it; router.store.tables renders the same text.
OPEN_ITEM = "state NOT IN ('approved', 'cancelled', 'denied', 'failed', 'rejected')"
OPEN_BUNDLE = "state = 'in_progress'"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("items") as batch_op:
        batch_op.add_column(sa.Column("accept_clock", JSON, nullable=True))
        batch_op.add_column(sa.Column("decide_clock", JSON, nullable=True))
        batch_op.add_column(sa.Column("gap_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column("overdue")
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.add_column(sa.Column("clock", JSON, nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    for name, column in (
        ("ix_items_open_accept_due", "accept_due_at"),
        ("ix_items_open_gap_due", "gap_due_at"),
    ):
        op.create_index(
            name,
            "items",
            [column],
            postgresql_where=sa.text(OPEN_ITEM),
            sqlite_where=sa.text(OPEN_ITEM),
        )
    op.create_index(
        "ix_bundles_open_due",
        "bundles",
        ["due_at"],
        postgresql_where=sa.text(OPEN_BUNDLE),
        sqlite_where=sa.text(OPEN_BUNDLE),
    )
    op.create_table(
        "deadline_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ux_deadline_alerts_once",
        "deadline_alerts",
        ["bundle_id", "item", "kind", "level", "due_at"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_deadline_alerts_once", table_name="deadline_alerts")
    op.drop_table("deadline_alerts")
    op.drop_index("ix_bundles_open_due", table_name="bundles")
    op.drop_index("ix_items_open_gap_due", table_name="items")
    op.drop_index("ix_items_open_accept_due", table_name="items")
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.drop_column("due_at")
        batch_op.drop_column("clock")
    with op.batch_alter_table("items") as batch_op:
        batch_op.add_column(sa.Column("overdue", sa.String(length=16), nullable=True))
        batch_op.drop_column("gap_due_at")
        batch_op.drop_column("decide_clock")
        batch_op.drop_column("accept_clock")
