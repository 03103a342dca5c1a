"""Trades: the inclusion block's hash (a reorg that re-mines a trade at the same height is only
visible by hash) and the start token's symbol and decimals (so clients can show units).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("block_hash", sa.String(66), nullable=True))
        batch.add_column(sa.Column("token_symbol", sa.String(64), nullable=True))
        batch.add_column(sa.Column("token_decimals", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("token_decimals")
        batch.drop_column("token_symbol")
        batch.drop_column("block_hash")
