"""bundle evidence: the licences and earlier results intake verified for a bundle

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.add_column(sa.Column("evidence", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.drop_column("evidence")
