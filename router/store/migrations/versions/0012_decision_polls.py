"""decision polls: items a department has filed and not decided, and when to ask next

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_polls",
        sa.Column("bundle_id", sa.Uuid(), sa.ForeignKey("bundles.id"), primary_key=True),
        sa.Column("item", sa.String(length=64), primary_key=True),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_answer", sa.Text(), nullable=False),
        sa.Column("last_answer_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filing_ref", sa.String(length=128), nullable=True),
        sa.Column("polls", sa.Integer(), nullable=False),
    )
    op.create_index("ix_decision_polls_next_poll_at", "decision_polls", ["next_poll_at"])


def downgrade() -> None:
    op.drop_index("ix_decision_polls_next_poll_at", table_name="decision_polls")
    op.drop_table("decision_polls")
