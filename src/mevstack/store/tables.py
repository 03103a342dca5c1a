"""The schema at migration head, as SQLAlchemy Core tables the repository queries.

This mirrors what the migrations build; it never creates anything itself (a test compares it
with a freshly migrated database, so the two cannot drift apart).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from mevstack.store.types import UtcDateTime, WeiAmount

metadata = MetaData()

ACTIVE_STATUSES = ("pending", "submitted")
ACTIVE_TRADE = text("status IN ('pending', 'submitted') AND opportunity_id IS NOT NULL")

AutoId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

opportunities = Table(
    "opportunities",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("chain", String(64), nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("expires_at_block", BigInteger, nullable=True),
    Column("net_profit_wei", WeiAmount, nullable=False),
    Column("document", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_opportunities_detected", "detected_at", "id"),
    Index("ix_opportunities_chain_detected", "chain", "detected_at"),
    Index("ix_opportunities_status", "status"),
)

trades = Table(
    "trades",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("opportunity_id", String(128), nullable=True),
    Column("chain", String(64), nullable=False),
    Column("route", String(16), nullable=False),
    Column("token", String(42), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_in", WeiAmount, nullable=True),
    Column("expected_profit", WeiAmount, nullable=True),
    Column("realized_profit", WeiAmount, nullable=True),
    Column("gas_used", BigInteger, nullable=True),
    Column("gas_cost_wei", WeiAmount, nullable=True),
    Column("net_pnl_wei", WeiAmount, nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("confirmations", Integer, nullable=False),
    Column("tx_hashes", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("fencing_epoch", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("block_hash", String(66), nullable=True),
    Column("token_symbol", String(64), nullable=True),
    Column("token_decimals", Integer, nullable=True),
    Index("ix_trades_created", "created_at", "id"),
    Index("ix_trades_chain_status", "chain", "status"),
    Index("ix_trades_opportunity", "opportunity_id"),
    Index(
        "uq_trades_active_opportunity",
        "opportunity_id",
        unique=True,
        postgresql_where=ACTIVE_TRADE,
        sqlite_where=ACTIVE_TRADE,
    ),
)

tokens = Table(
    "tokens",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("address", String(42), primary_key=True),
    Column("symbol", String(64), nullable=False),
    Column("decimals", Integer, nullable=False),
    Column("safe", Boolean, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_audit_log_at", "at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("sha256", name="uq_api_tokens_sha256"),
)

kv_state = Table(
    "kv_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
