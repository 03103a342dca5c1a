"""The Opportunity object (docs/contracts.md): exact amounts, estimates, a stable id, its JSON.

The id is a hash of what makes an opportunity the same one from block to block — chain, kind,
the pools in order with their swap directions, and the trigger tx — so it stays the same while
the path persists and its amounts are refreshed.  Whoever keeps the lifecycle turns it into an
:func:`episode_id` (the path and the block it was first seen in), so that a path that re-opens
after expiring or being executed is a new opportunity.  Amounts are ints here and decimal strings on
the wire; addresses are EIP-55 checksummed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

from eth_utils.address import to_checksum_address

OpportunityKind = Literal["arbitrage", "backrun"]
OpportunityStatus = Literal[
    "detected", "simulated", "submitted", "included", "failed", "expired", "rejected"
]


@dataclass(frozen=True, slots=True)
class Hop:
    """One swap of the path, with its exact amounts in the state of the opportunity's block."""

    dex: str
    pool: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    dex_kind: str  # the configured kind of the hop's DEX (uniswap_v2, uniswap_v3, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "dex": self.dex,
            "pool": _checksum(self.pool),
            "token_in": _checksum(self.token_in),
            "token_out": _checksum(self.token_out),
            "amount_in": str(self.amount_in),
            "amount_out": str(self.amount_out),
            "dex_kind": self.dex_kind,
        }


def opportunity_id(
    chain_id: int, kind: str, path: Sequence[tuple[str, str, str]], trigger_tx: str | None
) -> str:
    """Stable id from (chain, kind, [(pool, token_in, token_out)...], trigger tx)."""
    parts = [str(chain_id), kind]
    parts.extend(f"{pool.lower()}:{t_in.lower()}>{t_out.lower()}" for pool, t_in, t_out in path)
    parts.append((trigger_tx or "").lower())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def episode_id(path_id: str, first_block: int) -> str:
    """The id of one episode of a path: from the block it was first seen in until it expires or
    is executed.  The same gap re-opening later is a new opportunity with an id of its own, so
    an executed one keeps its trade's outcome while a new one is listed beside it."""
    return hashlib.sha256(f"{path_id}|{first_block}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Opportunity:
    """An arbitrage or backrun found at ``block_number`` (see docs/contracts.md, JSON shapes)."""

    id: str
    chain: str
    chain_id: int
    kind: OpportunityKind
    block_number: int
    token: str
    amount_in: int
    amount_out: int
    gross_profit: int
    gas_estimate: int
    gas_price_wei: int
    gas_cost_wei: int
    net_profit_wei: int
    path: tuple[Hop, ...]
    trigger_tx: str | None
    status: OpportunityStatus
    detected_at: str
    expires_at_block: int
    # Display metadata of ``token`` (from the token cache), so clients can show units; amounts
    # stay integers in the token's base units either way.
    token_symbol: str | None = None
    token_decimals: int | None = None
    # A backrun's amounts are on the state after these pending txs (hashes, in the order the
    # next block will hold them: those a node orders ahead of ``trigger_tx``), then the trigger.
    ahead_txs: tuple[str, ...] = ()
    # ...and, after the trigger, these (the pending txs a node puts between the trigger and the
    # backrun: ranked level with or above the backrun, and seen before it), in block order.
    between_txs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.gross_profit != self.amount_out - self.amount_in:
            raise ValueError("gross_profit must equal amount_out - amount_in")
        if not self.path or self.path[0].amount_in != self.amount_in:
            raise ValueError("the first hop's amount_in must be the opportunity's amount_in")
        if self.path[-1].amount_out != self.amount_out:
            raise ValueError("the last hop's amount_out must be the opportunity's amount_out")

    def with_status(self, status: OpportunityStatus) -> Opportunity:
        return replace(self, status=status)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chain": self.chain,
            "chain_id": self.chain_id,
            "kind": self.kind,
            "block_number": self.block_number,
            "token": _checksum(self.token),
            "amount_in": str(self.amount_in),
            "amount_out": str(self.amount_out),
            "gross_profit": str(self.gross_profit),
            "gas_estimate": self.gas_estimate,
            "gas_price_wei": str(self.gas_price_wei),
            "gas_cost_wei": str(self.gas_cost_wei),
            "net_profit_wei": str(self.net_profit_wei),
            "path": [hop.to_json() for hop in self.path],
            "trigger_tx": self.trigger_tx,
            "status": self.status,
            "detected_at": self.detected_at,
            "expires_at_block": self.expires_at_block,
            "token_symbol": self.token_symbol,
            "token_decimals": self.token_decimals,
            "ahead_txs": list(self.ahead_txs),
            "between_txs": list(self.between_txs),
        }


@lru_cache(maxsize=65_536)
def _checksum(address: str) -> str:
    # EIP-55 hashes the address each time; the same few thousand pools and tokens recur in every
    # block's opportunities, so cache it.
    return str(to_checksum_address(address))
