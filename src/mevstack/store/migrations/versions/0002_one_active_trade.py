"""At most one active (pending or submitted) trade per opportunity, enforced by the database.

Two engine replicas share one PostgreSQL: the check an API handler makes before inserting a
trade cannot stop both from inserting at once; a partial unique index can.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("status IN ('pending', 'submitted') AND opportunity_id IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "uq_trades_active_opportunity",
        "trades",
        ["opportunity_id"],
        unique=True,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_trades_active_opportunity", table_name="trades")
