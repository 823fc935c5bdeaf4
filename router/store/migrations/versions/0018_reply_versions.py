"""reply versions: a decision that outlived a withdrawal corrects the reply in a new
version (the old ones are kept); an item records when its department refused a cancel

Revision ID: 0018
Revises: 0016
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

_BODY = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _replies(name: str, *, versioned: bool) -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("bundle_id", sa.Uuid(), sa.ForeignKey("bundles.id"), primary_key=True)
    ]
    if versioned:
        columns.append(sa.Column("version", sa.Integer(), primary_key=True))
    op.create_table(
        name,
        *columns,
        sa.Column("body", _BODY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def upgrade() -> None:
    # The primary key grows a column: a new table, the replies copied as version 1 (the
    # same statements on SQLite and PostgreSQL, where batch mode would differ).
    _replies("replies_versioned", versioned=True)
    op.execute(
        "INSERT INTO replies_versioned (bundle_id, version, body, created_at) "
        "SELECT bundle_id, 1, body, created_at FROM replies"
    )
    op.drop_table("replies")
    op.rename_table("replies_versioned", "replies")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cancel_refused_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("cancel_refused_at")
    _replies("replies_first", versioned=False)
    op.execute(
        "INSERT INTO replies_first (bundle_id, body, created_at) "
        "SELECT bundle_id, body, created_at FROM replies WHERE version = 1"
    )
    op.drop_table("replies")
    op.rename_table("replies_first", "replies")
