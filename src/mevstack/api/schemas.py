"""The JSON shapes of DESIGN.md as pydantic models, used to document the OpenAPI responses.

Handlers return plain dicts (what the engine and store produce); these models only describe them,
so the OpenAPI document is complete without a second copy of the data passing through pydantic.
Objects allow additional properties: DESIGN.md lets us add fields, never drop or rename them.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

DecimalString = str  # uint256 amounts travel as decimal strings


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Meta(_Open):
    count: int = Field(ge=0)
    as_of: str
    stale: bool
    source: str
    age_s: float | None = None
    next_cursor: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ListEnvelope(_Open, Generic[T]):
    data: list[T]
    meta: Meta


class ObjectEnvelope(_Open, Generic[T]):
    data: T
    meta: Meta


class Hop(_Open):
    dex: str
    pool: str
    token_in: str
    token_out: str
    amount_in: DecimalString
    amount_out: DecimalString


class Opportunity(_Open):
    id: str
    chain: str
    chain_id: int
    kind: Literal["arbitrage", "backrun"]
    block_number: int
    token: str
    amount_in: DecimalString
    amount_out: DecimalString
    gross_profit: DecimalString
    gas_estimate: int
    gas_price_wei: DecimalString
    gas_cost_wei: DecimalString
    net_profit_wei: DecimalString
    path: list[Hop]
    trigger_tx: str | None
    status: Literal[
        "detected", "simulated", "submitted", "included", "failed", "expired", "rejected"
    ]
    detected_at: str
    expires_at_block: int
    token_symbol: str | None = None
    token_decimals: int | None = None
    # a backrun's: the pending transactions its amounts assume ahead of ``trigger_tx``, in order
    ahead_txs: list[str] = Field(default_factory=list)
    # ...and those it assumes after the trigger, in front of the backrun, in order
    between_txs: list[str] = Field(default_factory=list)


class Trade(_Open):
    id: str
    opportunity_id: str | None
    chain: str
    route: str
    token: str
    tx_hashes: list[str]
    status: Literal["pending", "submitted", "included", "failed", "reverted", "cancelled"]
    expected_profit: DecimalString | None
    realized_profit: DecimalString | None
    gas_used: int | None
    gas_cost_wei: DecimalString | None
    net_pnl_wei: DecimalString | None
    block_number: int | None
    confirmations: int | None
    error: str | None
    created_at: str
    updated_at: str
    token_symbol: str | None = None
    token_decimals: int | None = None


class NodeStatus(_Open):
    chain: str
    chain_id: int
    url: str
    state: Literal["ok", "lagging", "syncing", "down", "wrong_chain"]
    head_block: int | None
    head_age_s: float | None
    lag_blocks: int | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    error_rate: float | None
    peers: int | None
    is_primary: bool
    checked_at: str


class PriorityFees(BaseModel):
    p10: DecimalString
    p50: DecimalString
    p90: DecimalString


class GasQuote(_Open):
    chain: str
    block_number: int
    base_fee_wei: DecimalString
    next_base_fee_wei: DecimalString
    priority_fee_wei: PriorityFees
    l1_fee_model: Literal["none", "op_stack", "arbitrum"]
    l1_data_fee_wei_per_kb: DecimalString | None
    updated_at: str


class Health(_Open):
    status: Literal["ok", "degraded", "down"]
    backends: list[dict[str, object]]
    version: str


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=4096)


class Session(BaseModel):
    session_token: str
    token_type: Literal["Bearer"]
    name: str
    scopes: list[str]
    expires_at: str


class Record(_Open):
    """An object whose shape belongs to a feature not pinned by DESIGN.md (state, agents...)."""


class PatchTradingState(_Open):
    """Fields of the trading state to change (mode, kill switch, limits)."""
