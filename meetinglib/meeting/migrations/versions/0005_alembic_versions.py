"""Alembic keeps the schema's revision: the hand-kept schema_version table goes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Stores from before Alembic have it (store.upgrade stamped their revision from it);
    # stores created since never do.
    if sa.inspect(op.get_bind()).has_table("schema_version"):
        op.drop_table("schema_version")


def downgrade() -> None:
    pass
