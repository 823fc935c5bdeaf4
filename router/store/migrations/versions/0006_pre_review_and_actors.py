"""pre-review and tolerated gaps on items; the actor of every timeline event; room for
longer department receipt numbers

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "awaiting_prerequisites", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("tolerated_gaps", _JSON, nullable=True))
        batch_op.alter_column(
            "receipt_no", type_=sa.String(length=128), existing_type=sa.String(length=64)
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        # Events recorded before actors were kept were all the router's own doing.
        batch_op.add_column(
            sa.Column("actor", sa.String(length=64), nullable=False, server_default="router")
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("actor")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.alter_column(
            "receipt_no", type_=sa.String(length=64), existing_type=sa.String(length=128)
        )
        batch_op.drop_column("tolerated_gaps")
        batch_op.drop_column("awaiting_prerequisites")
