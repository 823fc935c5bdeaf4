"""item trouble: why a department has not answered an item (retrying, parked)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = ("trouble", "trouble_at", "trouble_attempt", "next_retry_at", "last_error", "circuit")


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trouble", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("trouble_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("trouble_attempt", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("circuit", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
