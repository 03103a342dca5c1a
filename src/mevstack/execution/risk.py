"""Pure risk checks: the limits, blocklist and runtime status a trade must pass before signing.

No I/O: :func:`evaluate` takes everything it needs (mode, kill switch, a chain's limits, the
blocklist, the chain's runtime status and the candidate trade) and answers a
:class:`RiskDecision`.  The order of checks is fixed so that the reason given is the most
fundamental one (a stopped system says "kill switch", not "fee too high").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from eth_utils.address import is_address, to_checksum_address

from mevstack.errors import MevstackError

Mode = Literal["observe", "paper", "live"]
MODES: tuple[Mode, ...] = ("observe", "paper", "live")
BlockKind = Literal["token", "pool"]
BLOCK_KINDS: tuple[BlockKind, ...] = ("token", "pool")


class RiskConfigError(MevstackError):
    """A trading-state change (mode, limit, blocklist entry) is invalid."""


def parse_mode(value: object) -> Mode:
    if value not in MODES:
        raise RiskConfigError(f"mode: expected one of {', '.join(MODES)}, got {value!r}")
    return value


def parse_wei(name: str, value: object) -> int:
    """A non-negative wei amount from an int or a decimal string (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RiskConfigError(f"{name}: expected a decimal string of wei, got {value!r}")
    text = str(value).strip()
    if not text.isdigit():
        raise RiskConfigError(f"{name}: expected a non-negative integer, got {value!r}")
    amount = int(text)
    if amount >= 2**256:
        raise RiskConfigError(f"{name}: does not fit in uint256")
    return amount


def parse_address(name: str, value: object) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise RiskConfigError(f"{name}: expected a 20-byte hex address, got {value!r}")
    return to_checksum_address(value)


@dataclass(frozen=True, slots=True)
class ChainLimits:
    """Per-chain limits; 0 means "no limit" for the caps (not for ``max_in_flight``)."""

    max_trade_wei: int = 0
    daily_loss_limit_wei: int = 0
    max_fee_per_gas_wei: int = 0
    max_in_flight: int = 1
    min_native_balance_wei: int = 0
    min_net_profit_wei: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "max_trade_wei": str(self.max_trade_wei),
            "daily_loss_limit_wei": str(self.daily_loss_limit_wei),
            "max_fee_per_gas_wei": str(self.max_fee_per_gas_wei),
            "max_in_flight": self.max_in_flight,
            "min_native_balance_wei": str(self.min_native_balance_wei),
            "min_net_profit_wei": str(self.min_net_profit_wei),
        }

    def updated(self, changes: Mapping[str, object]) -> ChainLimits:
        """A copy with ``changes`` applied, every key and value validated."""
        values: dict[str, int] = {
            "max_trade_wei": self.max_trade_wei,
            "daily_loss_limit_wei": self.daily_loss_limit_wei,
            "max_fee_per_gas_wei": self.max_fee_per_gas_wei,
            "max_in_flight": self.max_in_flight,
            "min_native_balance_wei": self.min_native_balance_wei,
            "min_net_profit_wei": self.min_net_profit_wei,
        }
        for key, value in changes.items():
            if key not in values:
                raise RiskConfigError(
                    f"limits: unknown key {key!r} (use {', '.join(sorted(values))})"
                )
            if key == "max_in_flight":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                    raise RiskConfigError(f"max_in_flight: expected 1..64, got {value!r}")
                values[key] = value
            else:
                values[key] = parse_wei(key, value)
        return ChainLimits(**values)


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One blocklisted token or pool; ``chain`` None applies everywhere."""

    kind: BlockKind
    address: str
    chain: str | None
    source: str
    reason: str
    created_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def matches(self, chain: str, address: str) -> bool:
        return (self.chain is None or self.chain == chain) and self.address == address

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "address": self.address,
            "chain": self.chain,
            "source": self.source,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BlockEntry:
        expires = doc.get("expires_at")
        kind = doc["kind"]
        if kind not in BLOCK_KINDS:
            raise RiskConfigError(f"blocklist: bad kind {kind!r}")
        return cls(
            kind=cast(BlockKind, kind),
            address=parse_address("blocklist address", doc["address"]),
            chain=doc.get("chain"),
            source=str(doc["source"]),
            reason=str(doc.get("reason", "")),
            created_at=datetime.fromisoformat(doc["created_at"]),
            expires_at=None if expires is None else datetime.fromisoformat(expires),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the gate needs to know about a trade about to be signed."""

    chain: str
    token: str
    tokens: tuple[str, ...]
    pools: tuple[str, ...]
    trade_value_wei: int | None
    max_fee_per_gas_wei: int
    net_profit_wei: int

    @classmethod
    def from_opportunity(
        cls,
        doc: Mapping[str, Any],
        *,
        max_fee_per_gas_wei: int,
        wrapped_native: str | None = None,
        trade_value_wei: int | None = None,
    ) -> Candidate:
        """From an Opportunity document; the trade's native value is ``amount_in`` when the
        cycle starts in the wrapped native token, else ``trade_value_wei`` (None: unknown)."""
        token = to_checksum_address(doc["token"])
        amount_in = int(doc["amount_in"])
        if (
            trade_value_wei is None
            and wrapped_native is not None
            and token == to_checksum_address(wrapped_native)
        ):
            trade_value_wei = amount_in
        tokens: list[str] = [token]
        pools: list[str] = []
        for hop in doc.get("path", []):
            pools.append(to_checksum_address(hop["pool"]))
            for key in ("token_in", "token_out"):
                address = to_checksum_address(hop[key])
                if address not in tokens:
                    tokens.append(address)
        return cls(
            chain=str(doc["chain"]),
            token=token,
            tokens=tuple(tokens),
            pools=tuple(pools),
            trade_value_wei=trade_value_wei,
            max_fee_per_gas_wei=max_fee_per_gas_wei,
            net_profit_wei=int(doc["net_profit_wei"]),
        )


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """Runtime facts about a chain that the limits are checked against."""

    in_flight: int = 0
    native_balance_wei: int | None = None
    pnl_today_wei: int = 0


@dataclass(frozen=True, slots=True)
class RiskDecision:
    ok: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


ALLOW = RiskDecision(True)


def _refuse(reason: str, **details: Any) -> RiskDecision:
    return RiskDecision(False, reason, details)


def blocked_by(
    blocklist: Iterable[BlockEntry], chain: str, kind: BlockKind, address: str, now: datetime
) -> BlockEntry | None:
    for entry in blocklist:
        if entry.kind == kind and entry.active(now) and entry.matches(chain, address):
            return entry
    return None


def paused_reason(limits: ChainLimits, status: ChainStatus) -> str | None:
    """Why a chain is paused regardless of the trade, or None."""
    if limits.min_native_balance_wei:
        if status.native_balance_wei is None:
            return "operator balance unknown (balance floor is set)"
        if status.native_balance_wei < limits.min_native_balance_wei:
            return (
                f"operator balance {status.native_balance_wei} wei below the floor "
                f"{limits.min_native_balance_wei} wei"
            )
    if limits.daily_loss_limit_wei and -status.pnl_today_wei >= limits.daily_loss_limit_wei:
        return (
            f"daily loss {-status.pnl_today_wei} wei reached the limit "
            f"{limits.daily_loss_limit_wei} wei"
        )
    return None


def evaluate(
    *,
    mode: Mode,
    kill_switch: bool,
    limits: ChainLimits,
    blocklist: Iterable[BlockEntry],
    status: ChainStatus,
    candidate: Candidate,
    now: datetime,
) -> RiskDecision:
    """Whether ``candidate`` may be signed now, and if not the first reason why."""
    if kill_switch:
        return _refuse("kill switch engaged")
    if mode == "observe":
        return _refuse("mode is observe")
    paused = paused_reason(limits, status)
    if paused is not None:
        return _refuse(f"chain {candidate.chain} paused: {paused}")
    entries = list(blocklist)
    for token in candidate.tokens:
        hit = blocked_by(entries, candidate.chain, "token", token, now)
        if hit is not None:
            return _refuse(f"token {token} is blocklisted by {hit.source}: {hit.reason}")
    for pool in candidate.pools:
        hit = blocked_by(entries, candidate.chain, "pool", pool, now)
        if hit is not None:
            return _refuse(f"pool {pool} is blocklisted by {hit.source}: {hit.reason}")
    if limits.max_trade_wei:
        if candidate.trade_value_wei is None:
            return _refuse("trade value in native wei unknown while max_trade_wei is set")
        if candidate.trade_value_wei > limits.max_trade_wei:
            return _refuse(
                f"trade value {candidate.trade_value_wei} wei above max_trade_wei "
                f"{limits.max_trade_wei}"
            )
    if limits.max_fee_per_gas_wei and candidate.max_fee_per_gas_wei > limits.max_fee_per_gas_wei:
        return _refuse(
            f"max fee {candidate.max_fee_per_gas_wei} wei/gas above the cap "
            f"{limits.max_fee_per_gas_wei}"
        )
    if status.in_flight >= limits.max_in_flight:
        return _refuse(f"{status.in_flight} trades in flight (limit {limits.max_in_flight})")
    if candidate.net_profit_wei < limits.min_net_profit_wei or candidate.net_profit_wei <= 0:
        return _refuse(
            f"net profit {candidate.net_profit_wei} wei below the minimum "
            f"{max(limits.min_net_profit_wei, 1)}"
        )
    return ALLOW
