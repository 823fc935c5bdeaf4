"""audit writer signatures: each record carries its writer's HMAC, so a row inserted in
the database by anyone else is never sealed and fails verification

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("writer_mac", sa.String(length=64), nullable=True))
    with op.batch_alter_table("audit_chain", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("signed_from_seq", sa.BigInteger(), nullable=False, server_default="1")
        )
    # Records sealed before this revision carry no signature: verification asks one of
    # the records after the head as it is now.
    op.execute("UPDATE audit_chain SET signed_from_seq = head_seq + 1")


def downgrade() -> None:
    with op.batch_alter_table("audit_chain", schema=None) as batch_op:
        batch_op.drop_column("signed_from_seq")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("writer_mac")
