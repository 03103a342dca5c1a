"""The typed records the store reads and writes (exact ints for money, aware UTC datetimes).

Each record knows its JSON shape of docs/contracts.md (``to_json``): amounts as decimal strings,
times as ISO-8601 UTC strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TRADE_STATUSES = frozenset({"pending", "submitted", "included", "failed", "reverted", "cancelled"})
OPPORTUNITY_STATUSES = frozenset(
    {"detected", "simulated", "submitted", "included", "failed", "expired", "rejected"}
)
OPPORTUNITY_KINDS = frozenset({"arbitrage", "backrun"})
ROUTES = frozenset({"public", "private", "bundle"})
API_SCOPES = frozenset({"read", "trade", "admin"})


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, the format of every JSON time field."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _amount(value: int | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Trade:
    id: str
    chain: str
    route: str
    token: str
    status: str = "pending"
    opportunity_id: str | None = None
    amount_in: int | None = None
    expected_profit: int | None = None
    realized_profit: int | None = None
    gas_used: int | None = None
    gas_cost_wei: int | None = None
    net_pnl_wei: int | None = None
    block_number: int | None = None
    confirmations: int = 0
    tx_hashes: tuple[str, ...] = ()
    error: str | None = None
    fencing_epoch: int = 0
    created_at: datetime | None = None  # set by the store on insert when None
    updated_at: datetime | None = None
    block_hash: str | None = None  # of the inclusion block: a reorg at the same height changes it
    token_symbol: str | None = None  # the start token's, so clients can show units
    token_decimals: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opportunity_id": self.opportunity_id,
            "chain": self.chain,
            "route": self.route,
            "token": self.token,
            "tx_hashes": list(self.tx_hashes),
            "status": self.status,
            "amount_in": _amount(self.amount_in),
            "expected_profit": _amount(self.expected_profit),
            "realized_profit": _amount(self.realized_profit),
            "gas_used": self.gas_used,
            "gas_cost_wei": _amount(self.gas_cost_wei),
            "net_pnl_wei": _amount(self.net_pnl_wei),
            "block_number": self.block_number,
            "confirmations": self.confirmations,
            "error": self.error,
            "fencing_epoch": self.fencing_epoch,
            "created_at": None if self.created_at is None else iso(self.created_at),
            "updated_at": None if self.updated_at is None else iso(self.updated_at),
            "token_symbol": self.token_symbol,
            "token_decimals": self.token_decimals,
        }


@dataclass(frozen=True, slots=True)
class TradePage:
    items: list[Trade]
    next_cursor: str | None  # None: this was the last page


@dataclass(frozen=True, slots=True)
class TokenInfo:
    chain_id: int
    address: str
    symbol: str
    decimals: int
    safe: bool | None = None  # None: not checked yet
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    name: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: datetime
