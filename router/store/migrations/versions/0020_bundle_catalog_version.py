"""bundles record the catalog version and region they were accepted under; items the
route (area and level) their department's adapter is reached by

A bundle finishes under the catalog it was accepted under, so a catalog version
published while it is in flight (an item renamed, a level changed) cannot strand it.
Bundles accepted before this revision have neither: they finish under the built-in
catalog's view for their application's area, and their items keep the routing key
without an area, which every province-wide department queue still receives.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bundles", sa.Column("catalog_version", sa.String(length=64), nullable=True))
    op.add_column("bundles", sa.Column("catalog_region", sa.String(length=32), nullable=True))
    op.add_column("items", sa.Column("route", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "route")
    op.drop_column("bundles", "catalog_region")
    op.drop_column("bundles", "catalog_version")
