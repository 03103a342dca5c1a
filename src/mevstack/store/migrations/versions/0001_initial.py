"""Initial schema: opportunities, trades, tokens, audit_log, api_tokens, kv_state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mevstack.store.types import UtcDateTime, WeiAmount

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "opportunities",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detected_at", UtcDateTime, nullable=False),
        sa.Column("expires_at_block", sa.BigInteger, nullable=True),
        sa.Column("net_profit_wei", WeiAmount, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_opportunities_detected", "opportunities", ["detected_at", "id"])
    op.create_index("ix_opportunities_chain_detected", "opportunities", ["chain", "detected_at"])
    op.create_index("ix_opportunities_status", "opportunities", ["status"])

    op.create_table(
        "trades",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("opportunity_id", sa.String(128), nullable=True),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_in", WeiAmount, nullable=True),
        sa.Column("expected_profit", WeiAmount, nullable=True),
        sa.Column("realized_profit", WeiAmount, nullable=True),
        sa.Column("gas_used", sa.BigInteger, nullable=True),
        sa.Column("gas_cost_wei", WeiAmount, nullable=True),
        sa.Column("net_pnl_wei", WeiAmount, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("confirmations", sa.Integer, nullable=False),
        sa.Column("tx_hashes", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("fencing_epoch", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_trades_created", "trades", ["created_at", "id"])
    op.create_index("ix_trades_chain_status", "trades", ["chain", "status"])
    op.create_index("ix_trades_opportunity", "trades", ["opportunity_id"])

    op.create_table(
        "tokens",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("decimals", sa.Integer, nullable=False),
        sa.Column("safe", sa.Boolean, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_api_tokens_sha256"),
    )

    op.create_table(
        "kv_state",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("kv_state", "api_tokens", "audit_log", "tokens", "trades", "opportunities"):
        op.drop_table(table)
