"""open items index: the deadline watcher reads only items not yet final

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen here as the migration wrote it; router.store.tables.OPEN_ITEM renders the same text.
OPEN_ITEM = "state NOT IN ('approved', 'cancelled', 'denied', 'failed', 'rejected')"


def upgrade() -> None:
    op.create_index(
        "ix_items_open_deadlines",
        "items",
        ["decide_due_at"],
        postgresql_where=sa.text(OPEN_ITEM),
        sqlite_where=sa.text(OPEN_ITEM),
    )


def downgrade() -> None:
    op.drop_index("ix_items_open_deadlines", table_name="items")
