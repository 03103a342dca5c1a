"""The pool interface: what every DEX kind provides and what strategies may read.

A DEX kind (Uniswap V2 and its forks, Uniswap V3, later V4/Solidly/Algebra) is one module with one
:class:`PoolKind` object: discovery (decode the factory's creation logs), state loading (batched
raw JSON-RPC at one block), log decoding (turn a pool's logs into a new state) and gas per hop.
Pool states are frozen, slotted dataclasses stamped with the block they belong to; each offers
exact quotes.  Strategies only use :class:`PoolState` and the functions at the bottom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevstack.chain.rpc import JsonRpc
from mevstack.config import DexConfig

Log = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DexSpec:
    """One configured DEX: its name, kind and factory (and fee for V2 forks)."""

    name: str
    kind: str
    factory: str
    fee_bps: int = 30
    init_code_hash: str | None = None

    @classmethod
    def from_config(cls, dex: DexConfig) -> DexSpec:
        """The spec of one ``[[chains.dexes]]`` entry."""
        return cls(
            dex.name,
            dex.kind,
            str(dex.factory),
            30 if dex.fee_bps is None else dex.fee_bps,
            None if dex.init_code_hash is None else str(dex.init_code_hash),
        )

    def expected_address(self, token0: str, token1: str, fee: int) -> str | None:
        """The CREATE2 address the factory gives this pool, when the init code hash is known."""
        if self.init_code_hash is None:
            return None
        a, b = bytes.fromhex(token0[2:]), bytes.fromhex(token1[2:])
        if self.kind == "uniswap_v3":
            salt = keccak(b"\0" * 12 + a + b"\0" * 12 + b + fee.to_bytes(32, "big"))
        else:
            salt = keccak(a + b)
        digest = keccak(
            b"\xff"
            + bytes.fromhex(self.factory[2:])
            + salt
            + bytes.fromhex(self.init_code_hash.removeprefix("0x"))
        )
        return str(to_checksum_address(digest[12:]))


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """The immutable facts of a pool, as its factory announced them."""

    dex: str
    kind: str
    address: str
    token0: str
    token1: str
    fee: int  # V2: basis points (30 = 0.3 %); V3: hundredths of a bip (3000 = 0.3 %)
    tick_spacing: int | None
    created_block: int


@dataclass(frozen=True, slots=True)
class SwapResult:
    """An exact quote: the input actually used (a price limit can stop early) and the output."""

    amount_in_used: int
    amount_out: int
    ticks_crossed: int
    sqrt_price_after: int | None
    tick_after: int | None
    gas_estimate: int


class PoolState(Protocol):
    """What strategies read from any pool state (every state is stamped with its block)."""

    kind: ClassVar[str]

    @property
    def address(self) -> str: ...
    @property
    def dex(self) -> str: ...
    @property
    def token0(self) -> str: ...
    @property
    def token1(self) -> str: ...
    @property
    def block_number(self) -> int: ...

    def quote_exact_in(self, zero_for_one: bool, amount_in: int) -> SwapResult: ...
    def quote_exact_out(self, zero_for_one: bool, amount_out: int) -> SwapResult: ...
    def gas_estimate(self, ticks_crossed: int = 0) -> int: ...
    def restamped(self, block_number: int) -> PoolState: ...


@runtime_checkable
class PoolKind(Protocol):
    """One DEX kind: discovery, state loading, log decoding."""

    kind: str
    creation_topic: str  # topic0 of the factory event announcing a new pool
    pool_topics: frozenset[str]  # topic0s of the pool events that change state

    def decode_creation(self, dex: DexSpec, log: Log) -> PoolInfo: ...

    async def load_states(
        self, rpc: JsonRpc, infos: Sequence[PoolInfo], block_number: int
    ) -> list[PoolState]: ...

    def apply_log(self, state: Any, log: Log, block_number: int) -> PoolState: ...


def quote_exact_in(state: PoolState, zero_for_one: bool, amount_in: int) -> SwapResult:
    """The exact output of selling ``amount_in`` (token0 if ``zero_for_one``) into the pool."""
    return state.quote_exact_in(zero_for_one, amount_in)


def quote_exact_out(state: PoolState, zero_for_one: bool, amount_out: int) -> SwapResult:
    """The exact input needed to buy ``amount_out`` (token1 if ``zero_for_one``)."""
    return state.quote_exact_out(zero_for_one, amount_out)


def same_state(a: PoolState, b: PoolState) -> bool:
    """Whether two states describe the same pool contents, whatever block each is stamped with."""
    return a.restamped(0) == b.restamped(0)
