"""acceptance notices: each 受理 / 不予受理 as a notice to issue (PDF, push, file drop),
and the messages to the applicant (短信告知) a notifier sends until they are taken

Revision ID: 0015
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0017"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_UNISSUED = sa.text("issued_at IS NULL")
_UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("receipt_no", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decide_by", sa.Date(), nullable=True),
        sa.Column("document", _JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("traceparent", sa.String(length=55), nullable=True),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notices_bundle_id"), ["bundle_id"], unique=False)
        batch_op.create_index("ux_notices_once", ["bundle_id", "item", "decision"], unique=True)
        batch_op.create_index(
            "ix_notices_unissued",
            ["created_at"],
            unique=False,
            postgresql_where=_UNISSUED,
            sqlite_where=_UNISSUED,
        )
    op.create_table(
        "applicant_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("applicant_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_applicant_messages_bundle_id"), ["bundle_id"], unique=False
        )
        batch_op.create_index(
            "ix_applicant_messages_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=_UNSENT,
            sqlite_where=_UNSENT,
        )


def downgrade() -> None:
    op.drop_table("applicant_messages")
    op.drop_table("notices")
