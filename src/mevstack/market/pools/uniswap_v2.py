"""Uniswap V2 pairs (and forks with another fee): state, quotes, discovery, loading, Sync logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from mevstack.chain.rpc import JsonRpc
from mevstack.market import abi
from mevstack.market.base import DexSpec, Log, PoolInfo, PoolState, SwapResult
from mevstack.market.errors import DecodeError, InsufficientLiquidity
from mevstack.market.pools._batch import eth_calls
from mevstack.market.uniswap_v2 import get_amount_in, get_amount_out

# Gas one pair swap adds to an executor transaction (cold pair and token slots, the transfer in,
# reserve and price-accumulator writes, Sync + Swap logs, the hop's 43 calldata bytes and the
# executor's balance check of its token).  Measured on anvil 1.7.1 with the shipped Uniswap
# bytecode and our executor (tests/execution/test_gas_calibration.py): 57.9k for a V2 hop,
# rounded.  An estimate: the receipt's figure replaces it once a trade is included.
GAS_PER_HOP = 58_000

PAIR_CREATED = abi.topic("PairCreated(address,address,address,uint256)")
SYNC = abi.topic("Sync(uint112,uint112)")
_GET_RESERVES = abi.selector("getReserves()")


@dataclass(frozen=True, slots=True)
class V2PoolState:
    """A V2 pair's reserves at ``block_number``."""

    kind: ClassVar[str] = "uniswap_v2"
    address: str
    dex: str
    token0: str
    token1: str
    fee_bps: int
    reserve0: int
    reserve1: int
    block_number: int

    def quote_exact_in(self, zero_for_one: bool, amount_in: int) -> SwapResult:
        r_in, r_out = (
            (self.reserve0, self.reserve1) if zero_for_one else (self.reserve1, self.reserve0)
        )
        out = get_amount_out(amount_in, r_in, r_out, self.fee_bps)
        if out >= r_out:
            raise InsufficientLiquidity("INSUFFICIENT_LIQUIDITY")
        return SwapResult(amount_in, out, 0, None, None, GAS_PER_HOP)

    def quote_exact_out(self, zero_for_one: bool, amount_out: int) -> SwapResult:
        r_in, r_out = (
            (self.reserve0, self.reserve1) if zero_for_one else (self.reserve1, self.reserve0)
        )
        return SwapResult(
            get_amount_in(amount_out, r_in, r_out, self.fee_bps),
            amount_out,
            0,
            None,
            None,
            GAS_PER_HOP,
        )

    def gas_estimate(self, ticks_crossed: int = 0) -> int:
        return GAS_PER_HOP

    def restamped(self, block_number: int) -> V2PoolState:
        return replace(self, block_number=block_number)


class UniswapV2Kind:
    """Discovery from PairCreated, loading with getReserves, updates from Sync."""

    kind = "uniswap_v2"
    creation_topic = PAIR_CREATED
    pool_topics = frozenset({SYNC})

    def decode_creation(self, dex: DexSpec, log: Log) -> PoolInfo:
        topics = log["topics"]
        if len(topics) != 3 or topics[0] != PAIR_CREATED:
            raise DecodeError("not a PairCreated log")
        (pair, _count) = abi.words(log["data"], 2)
        return PoolInfo(
            dex=dex.name,
            kind=self.kind,
            address=abi.word_address(pair),
            token0=abi.topic_address(topics[1]),
            token1=abi.topic_address(topics[2]),
            fee=dex.fee_bps,
            tick_spacing=None,
            created_block=int(log["blockNumber"], 16),
        )

    async def load_states(
        self, rpc: JsonRpc, infos: Sequence[PoolInfo], block_number: int
    ) -> list[PoolState]:
        results = await eth_calls(rpc, [(i.address, _GET_RESERVES) for i in infos], block_number)
        states: list[PoolState] = []
        for info, data in zip(infos, results, strict=True):
            reserve0, reserve1, _ts = abi.words(data, 3)
            states.append(
                V2PoolState(
                    info.address,
                    info.dex,
                    info.token0,
                    info.token1,
                    info.fee,
                    reserve0,
                    reserve1,
                    block_number,
                )
            )
        return states

    def apply_log(self, state: V2PoolState, log: Log, block_number: int) -> V2PoolState:
        if log["topics"][0] != SYNC:
            return state
        data: str = log["data"]
        if len(data) < 130:
            raise DecodeError("Sync log too short")
        return V2PoolState(
            state.address,
            state.dex,
            state.token0,
            state.token1,
            state.fee_bps,
            int(data[2:66], 16),
            int(data[66:130], 16),
            block_number,
        )


UNISWAP_V2 = UniswapV2Kind()
