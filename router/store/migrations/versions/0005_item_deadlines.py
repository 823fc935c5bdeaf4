"""item deadlines: acceptance due (1 working day), decision due (promised days), overdue

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accept_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decide_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("overdue", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("overdue")
        batch_op.drop_column("decide_due_at")
        batch_op.drop_column("accept_due_at")
