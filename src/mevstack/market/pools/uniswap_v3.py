"""Uniswap V3 pools: state, exact quotes, discovery, loading, and Swap/Mint/Burn log updates.

The state keeps what the swap loop reads: price, the pool's own current tick (from slot0 or the
last Swap log; never recomputed from the price), in-range liquidity, the tick bitmap and each
initialised tick's liquidity-gross/-net.  Gross is kept so Mint/Burn logs can tell when a tick
becomes (un)initialised and flip its bitmap bit exactly as the pool does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.market import abi
from mevstack.market.base import DexSpec, Log, PoolInfo, PoolState, SwapResult
from mevstack.market.errors import DecodeError
from mevstack.market.pools import v3_lens
from mevstack.market.pools._batch import BATCH_SIZE, eth_calls
from mevstack.market.uniswap_v3.liquidity_math import add_delta
from mevstack.market.uniswap_v3.swap import V3SwapOutcome, simulate_swap
from mevstack.market.uniswap_v3.tick_bitmap import flip_tick
from mevstack.market.uniswap_v3.tick_math import MAX_TICK, MIN_TICK

log = logging.getLogger(__name__)

# Gas one pool swap adds to an executor transaction: a swap within one range (cold pool slots,
# the swap callback and its transfer, the oracle observation, the hop's calldata) and each
# initialised tick crossed (three tick-slot writes, the liquidity update; the first crossing of a
# swap also reads the oracle, ~6k more, folded in here).  Measured on anvil 1.7.1 with the
# shipped Uniswap bytecode and our executor (tests/execution/test_gas_calibration.py: 67.7k and
# 23.7k-30k per tick, rounded) on a pool and ticks with a trading history, as on mainnet: a
# pool's first swap or a tick's first crossing writes zero slots (20k instead of 2.9k each; a
# pool's first swap measured 17k more).  Estimates: the receipt's figure replaces them once a
# trade is included.
GAS_BASE = 67_000
GAS_PER_TICK = 25_000

POOL_CREATED = abi.topic("PoolCreated(address,address,uint24,int24,address)")
SWAP = abi.topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
MINT = abi.topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
BURN = abi.topic("Burn(address,int24,int24,uint128,uint256,uint256)")
INITIALIZE = abi.topic("Initialize(uint160,int24)")

_SLOT0 = abi.selector("slot0()")
_LIQUIDITY = abi.selector("liquidity()")
_TICK_BITMAP = abi.selector("tickBitmap(int16)")
_TICKS = abi.selector("ticks(int24)")


@dataclass(frozen=True, slots=True)
class V3PoolState:
    """A V3 pool at ``block_number``.  The mappings are never mutated once built."""

    kind: ClassVar[str] = "uniswap_v3"
    address: str
    dex: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    liquidity_net: Mapping[int, int]
    liquidity_gross: Mapping[int, int]
    bitmap: Mapping[int, int]
    block_number: int

    def swap(
        self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
    ) -> V3SwapOutcome:
        """The pool's swap from this state (> 0 exact input, < 0 exact output)."""
        return simulate_swap(
            sqrt_price_x96=self.sqrt_price_x96,
            tick=self.tick,
            liquidity=self.liquidity,
            fee=self.fee,
            tick_spacing=self.tick_spacing,
            bitmap=self.bitmap,
            liquidity_net=self.liquidity_net,
            zero_for_one=zero_for_one,
            amount_specified=amount_specified,
            sqrt_price_limit_x96=sqrt_price_limit_x96,
        )

    def _result(self, zero_for_one: bool, outcome: V3SwapOutcome) -> SwapResult:
        paid, received = (
            (outcome.amount0, -outcome.amount1)
            if zero_for_one
            else (outcome.amount1, -outcome.amount0)
        )
        return SwapResult(
            amount_in_used=paid,
            amount_out=received,
            ticks_crossed=outcome.initialized_ticks_crossed,
            sqrt_price_after=outcome.sqrt_price_x96,
            tick_after=outcome.tick,
            gas_estimate=self.gas_estimate(outcome.initialized_ticks_crossed),
        )

    def quote_exact_in(
        self, zero_for_one: bool, amount_in: int, sqrt_price_limit_x96: int | None = None
    ) -> SwapResult:
        return self._result(zero_for_one, self.swap(zero_for_one, amount_in, sqrt_price_limit_x96))

    def quote_exact_out(
        self, zero_for_one: bool, amount_out: int, sqrt_price_limit_x96: int | None = None
    ) -> SwapResult:
        outcome = self.swap(zero_for_one, -amount_out, sqrt_price_limit_x96)
        return self._result(zero_for_one, outcome)

    def gas_estimate(self, ticks_crossed: int = 0) -> int:
        return GAS_BASE + GAS_PER_TICK * ticks_crossed

    def restamped(self, block_number: int) -> V3PoolState:
        return replace(self, block_number=block_number)

    def with_position_change(
        self, tick_lower: int, tick_upper: int, delta: int, block_number: int
    ) -> V3PoolState:
        """The state after a Mint (``delta`` > 0) or Burn (< 0) of a position, as the pool does."""
        if delta == 0:
            return self.restamped(block_number)
        gross = dict(self.liquidity_gross)
        net = dict(self.liquidity_net)
        bitmap = dict(self.bitmap)
        for tick, is_upper in ((tick_lower, False), (tick_upper, True)):
            before = gross.get(tick, 0)
            after = add_delta(before, delta)
            if after == 0:
                gross.pop(tick, None)
                net.pop(tick, None)
            else:
                gross[tick] = after
                net[tick] = net.get(tick, 0) + (-delta if is_upper else delta)
            if (before == 0) != (after == 0):
                flip_tick(bitmap, tick, self.tick_spacing)
        liquidity = self.liquidity
        if tick_lower <= self.tick < tick_upper:
            liquidity = add_delta(liquidity, delta)
        return replace(
            self,
            liquidity=liquidity,
            liquidity_net=net,
            liquidity_gross=gross,
            bitmap=bitmap,
            block_number=block_number,
        )


def bitmap_word_range(tick_spacing: int) -> range:
    """Every bitmap word position a pool with this spacing can use."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


class UniswapV3Kind:
    """Discovery from PoolCreated, loading slot0/liquidity/bitmap/ticks, Swap/Mint/Burn updates."""

    kind = "uniswap_v3"
    creation_topic = POOL_CREATED
    pool_topics = frozenset({SWAP, MINT, BURN, INITIALIZE})

    def decode_creation(self, dex: DexSpec, log: Log) -> PoolInfo:
        topics = log["topics"]
        if len(topics) != 4 or topics[0] != POOL_CREATED:
            raise DecodeError("not a PoolCreated log")
        spacing, pool = abi.words(log["data"], 2)
        return PoolInfo(
            dex=dex.name,
            kind=self.kind,
            address=abi.word_address(pool),
            token0=abi.topic_address(topics[1]),
            token1=abi.topic_address(topics[2]),
            fee=int(topics[3], 16),
            tick_spacing=abi.to_signed(spacing),
            created_block=int(log["blockNumber"], 16),
        )

    def __init__(self, *, use_lens: bool = True) -> None:
        self.use_lens = use_lens

    async def load_states(
        self, rpc: JsonRpc, infos: Sequence[PoolInfo], block_number: int
    ) -> list[PoolState]:
        """Read every pool at ``block_number``: one reader call per pool (and 1,024 words), or,
        where the node refuses state overrides, plain batched calls word by word."""
        for info in infos:
            if info.tick_spacing is None:
                raise DecodeError(f"V3 pool {info.address} has no tick spacing")
        if self.use_lens and infos:
            try:
                return await self._load_with_lens(rpc, infos, block_number)
            except RpcError as exc:
                log.info("V3 reader via state override refused (%s): reading word by word", exc)
        return await self.load_states_by_words(rpc, infos, block_number)

    async def _load_with_lens(
        self, rpc: JsonRpc, infos: Sequence[PoolInfo], block_number: int
    ) -> list[PoolState]:
        calls: list[tuple[str, list[Any]]] = []
        owners: list[int] = []
        for index, info in enumerate(infos):
            words = bitmap_word_range(info.tick_spacing or 1)
            for first in range(words.start, words.stop, v3_lens.WORDS_PER_CALL):
                count = min(v3_lens.WORDS_PER_CALL, words.stop - first)
                calls.append(
                    v3_lens.call(info.address, info.tick_spacing or 1, first, count, block_number)
                )
                owners.append(index)
        answers: list[Any] = []
        for start in range(0, len(calls), BATCH_SIZE):
            answers.extend(await rpc.batch(calls[start : start + BATCH_SIZE]))
        heads: dict[int, tuple[int, int, int]] = {}
        gross: list[dict[int, int]] = [{} for _ in infos]
        net: list[dict[int, int]] = [{} for _ in infos]
        for index, answer in zip(owners, answers, strict=True):
            if isinstance(answer, RpcError):
                raise answer
            price, tick, liquidity, ticks = v3_lens.decode_result(str(answer))
            heads.setdefault(index, (price, tick, liquidity))
            for t, g, n in ticks:
                gross[index][t] = g
                net[index][t] = n
        states: list[PoolState] = []
        for index, info in enumerate(infos):
            spacing = info.tick_spacing or 1
            bitmap: dict[int, int] = {}
            for t in gross[index]:
                flip_tick(bitmap, t, spacing)
            price, tick, liquidity = heads[index]
            states.append(
                V3PoolState(
                    info.address,
                    info.dex,
                    info.token0,
                    info.token1,
                    info.fee,
                    spacing,
                    price,
                    tick,
                    liquidity,
                    net[index],
                    gross[index],
                    bitmap,
                    block_number,
                )
            )
        return states

    async def load_states_by_words(
        self, rpc: JsonRpc, infos: Sequence[PoolInfo], block_number: int
    ) -> list[PoolState]:
        """Read every pool at ``block_number``: two batched rounds (words, then set ticks)."""
        calls: list[tuple[str, str]] = []
        layout: list[range] = []
        for info in infos:
            if info.tick_spacing is None:
                raise DecodeError(f"V3 pool {info.address} has no tick spacing")
            calls.append((info.address, _SLOT0))
            calls.append((info.address, _LIQUIDITY))
            words = bitmap_word_range(info.tick_spacing)
            layout.append(words)
            calls.extend(
                (info.address, abi.call_data(_TICK_BITMAP, abi.encode_int(w))) for w in words
            )
        results = await eth_calls(rpc, calls, block_number)

        heads: list[tuple[int, int, int, dict[int, int]]] = []
        tick_calls: list[tuple[str, str]] = []
        tick_owner: list[tuple[int, int]] = []
        pos = 0
        for index, (info, words) in enumerate(zip(infos, layout, strict=True)):
            slot0 = abi.words(results[pos], 2)
            liquidity = abi.words(results[pos + 1], 1)[0]
            pos += 2
            bitmap: dict[int, int] = {}
            spacing = info.tick_spacing or 1
            for word_pos in words:
                value = int(results[pos], 16)
                pos += 1
                if value:
                    bitmap[word_pos] = value
                    for bit in range(256):
                        if value >> bit & 1:
                            tick = ((word_pos << 8) + bit) * spacing
                            tick_calls.append(
                                (info.address, abi.call_data(_TICKS, abi.encode_int(tick)))
                            )
                            tick_owner.append((index, tick))
            heads.append((slot0[0], abi.to_signed(slot0[1]), liquidity, bitmap))

        tick_results = await eth_calls(rpc, tick_calls, block_number)
        gross: list[dict[int, int]] = [{} for _ in infos]
        net: list[dict[int, int]] = [{} for _ in infos]
        for (index, tick), data in zip(tick_owner, tick_results, strict=True):
            g, n = abi.words(data, 2)
            gross[index][tick] = g
            net[index][tick] = abi.to_signed(n)
        states: list[PoolState] = []
        for index, info in enumerate(infos):
            sqrt_price, tick, liquidity, bitmap = heads[index]
            states.append(
                V3PoolState(
                    info.address,
                    info.dex,
                    info.token0,
                    info.token1,
                    info.fee,
                    info.tick_spacing or 1,
                    sqrt_price,
                    tick,
                    liquidity,
                    net[index],
                    gross[index],
                    bitmap,
                    block_number,
                )
            )
        return states

    def apply_log(self, state: V3PoolState, log: Log, block_number: int) -> V3PoolState:
        topics = log["topics"]
        kind = topics[0]
        data: str = log["data"]
        if kind == SWAP:
            if len(data) < 2 + 64 * 5:
                raise DecodeError("Swap log too short")
            return replace(
                state,
                sqrt_price_x96=int(data[130:194], 16),
                liquidity=int(data[194:258], 16),
                tick=abi.to_signed(int(data[258:322], 16)),
                block_number=block_number,
            )
        if kind == MINT:
            amount = abi.words(data, 2)[1]
            return state.with_position_change(
                abi.topic_int(topics[2]), abi.topic_int(topics[3]), amount, block_number
            )
        if kind == BURN:
            amount = abi.words(data, 1)[0]
            return state.with_position_change(
                abi.topic_int(topics[2]), abi.topic_int(topics[3]), -amount, block_number
            )
        if kind == INITIALIZE:
            price, tick = abi.words(data, 2)
            return replace(
                state, sqrt_price_x96=price, tick=abi.to_signed(tick), block_number=block_number
            )
        return state


UNISWAP_V3 = UniswapV3Kind()
