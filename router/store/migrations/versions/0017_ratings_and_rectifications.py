"""好差评: each bundle's rating (and its departments'), and the rectifications (整改) a
差评 opens, each with its due date and its 预警 / 超期 raised once

Revision ID: 0017
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OPEN = sa.text("state = 'open'")


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
        sa.Column("bundle_id", sa.Uuid(), sa.ForeignKey("bundles.id"), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reasons", _JSON, nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_ratings_once", "ratings", ["bundle_id", "department"], unique=True)
    op.create_table(
        "rectifications",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("bundle_id", sa.Uuid(), sa.ForeignKey("bundles.id"), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("working_days", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
    )
    op.create_index(
        "ux_rectifications_once", "rectifications", ["bundle_id", "department"], unique=True
    )
    op.create_index(
        "ix_rectifications_open_due",
        "rectifications",
        ["due_at"],
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_rectifications_open_due", table_name="rectifications")
    op.drop_index("ux_rectifications_once", table_name="rectifications")
    op.drop_table("rectifications")
    op.drop_index("ux_ratings_once", table_name="ratings")
    op.drop_table("ratings")
