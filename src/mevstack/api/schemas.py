"""The JSON shapes of docs/contracts.md as pydantic models, used to document the OpenAPI responses.

Handlers return plain dicts (what the engine and store produce); these models only describe them,
so the OpenAPI document is complete without a second copy of the data passing through pydantic.
Answer objects allow additional properties: the contract lets us add fields, never drop or rename
them.  Request bodies are the opposite: closed and exactly as strict as the engine's own checks.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from eth_utils.address import is_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

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
    dex_kind: str


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
    """An object whose shape belongs to a feature not pinned by the contract (state, agents...)."""


# --- request bodies -----------------------------------------------------------------------------
# As strict as the server: a body these models accept is one the engine acts on, except where the
# answer depends on live state (a chain name the engine does not run, a duplicate alert id).
# ``create_app`` turns every field marked CHAIN_MARK into an enum of the engine's chain names.

CHAIN_MARK = "x-mevstack-chain-name"


class _Body(BaseModel):
    # python-re: the same regex dialect as the tools that generate requests from the document
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


ChainName = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$"),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": r"^[a-z0-9][a-z0-9_-]*$",
            CHAIN_MARK: True,
        }
    ),
]


# A wei amount is a decimal string below 10**77 (2**256 is about 1.16e77).  Never a JSON number:
# parsers may hold one as a float, and an amount must be exact.
def _wei_text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("expected a decimal string of wei (a JSON number may not be exact)")
    return value


WeiAmount = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,77}$"), BeforeValidator(_wei_text)]


def _whole(value: object) -> object:
    # JSON does not tell 3 from 3.0, and neither does JSON Schema's "integer"
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


# Integers (no strings, no booleans) in a range; 3.0 counts as 3, as JSON Schema says.
_Whole = BeforeValidator(_whole)
InFlight = Annotated[StrictInt, Field(ge=1, le=64), _Whole]
Int53 = Annotated[StrictInt, Field(ge=-(2**53), le=2**53), _Whole]
Count53 = Annotated[StrictInt, Field(ge=0, le=2**53), _Whole]
UnixSeconds = Annotated[StrictInt, Field(ge=0, le=253402300799), _Whole]  # to 9999-12-31


class ChainLimitsPatch(_Body):
    """Limits of one chain to change; a missing or null field is left as it is."""

    max_trade_wei: WeiAmount | None = None
    daily_loss_limit_wei: WeiAmount | None = None
    max_fee_per_gas_wei: WeiAmount | None = None
    max_in_flight: InFlight | None = None
    min_native_balance_wei: WeiAmount | None = None
    min_net_profit_wei: WeiAmount | None = None


class PatchTradingState(_Body):
    """Fields of the trading state to change; a missing or null field is left as it is."""

    mode: Literal["observe", "paper", "live"] | None = None
    auto_execute: StrictBool | None = None
    kill_switch: StrictBool | None = None
    reason: Annotated[StrictStr, Field(max_length=1000)] | None = None
    limits: dict[ChainName, ChainLimitsPatch] | None = None


def _checksum_if_mixed(value: str) -> str:
    digits = value[2:]
    if not (digits.islower() or digits.isupper()) and not is_checksum_address(value):
        raise ValueError("a mixed-case address must carry a valid EIP-55 checksum")
    return value


# 0x and 40 hex digits, all lowercase or all uppercase (the document says only this), or mixed
# case with a valid EIP-55 checksum, which a JSON Schema cannot express.
Address = Annotated[
    StrictStr,
    Field(pattern=r"^0x[0-9a-fA-F]{40}$"),
    AfterValidator(_checksum_if_mixed),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^0x([0-9a-f]{40}|[0-9A-F]{40})$",
            "description": "lowercase or uppercase hex; an EIP-55 checksummed address is also"
            " accepted",
        }
    ),
]
Addresses = Address | Annotated[list[Address], Field(max_length=64)]
_ISO_TIME = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?$"
)


class ExploitAlertIn(_Body):
    """A ``POST /api/exploits`` alert: at least one address in ``pools`` or ``tokens``."""

    model_config = ConfigDict(
        extra="forbid",
        regex_engine="python-re",
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}, "minItems": 1}}}
                for name in ("pools", "tokens")
            ]
        },
    )

    chain: ChainName
    severity: Literal["low", "medium", "high", "critical"]
    id: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"\S")] | Int53 | None = (
        None
    )
    source: Annotated[StrictStr, Field(max_length=100)] | None = None
    kind: Annotated[StrictStr, Field(max_length=100)] | None = None
    title: Annotated[StrictStr, Field(max_length=1000)] | None = None
    pools: Addresses | None = None
    tokens: Addresses | None = None
    # ISO-8601 with a time of day (days to the 28th: every such date exists), or Unix seconds
    detected_at: Annotated[StrictStr, Field(pattern=_ISO_TIME)] | UnixSeconds | None = None
    block_number: Count53 | None = None
    tx_hash: Annotated[StrictStr, Field(pattern=r"^0x[0-9a-fA-F]{64}$")] | None = None
    details: Annotated[dict[StrictStr, StrictStr | Int53], Field(max_length=32)] | None = None

    @model_validator(mode="after")
    def _names_an_address(self) -> ExploitAlertIn:
        if not self.pools and not self.tokens:
            raise ValueError("name at least one address in pools or tokens")
        return self
