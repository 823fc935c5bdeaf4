"""handovers: 送达方式 and proof of delivery (送达凭证); notices kept for the file drop

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 17:10:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COURIER_DUE = sa.text("next_attempt_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "handovers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("courier", sa.String(length=64), nullable=True),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("waybill_issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("courier_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "proof",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("handovers", schema=None) as batch_op:
        batch_op.create_index("ux_handovers_once", ["bundle_id", "item"], unique=True)
        batch_op.create_index(
            "ix_handovers_courier_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=COURIER_DUE,
            sqlite_where=COURIER_DUE,
        )

    op.create_table(
        "item_notices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("item_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_notices_bundle_id"), ["bundle_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_item_notices_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("item_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_notices_created_at"))
        batch_op.drop_index(batch_op.f("ix_item_notices_bundle_id"))
    op.drop_table("item_notices")
    with op.batch_alter_table("handovers", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_handovers_courier_due",
            postgresql_where=COURIER_DUE,
            sqlite_where=COURIER_DUE,
        )
        batch_op.drop_index("ux_handovers_once")
    op.drop_table("handovers")
