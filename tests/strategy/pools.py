"""Pool states for the strategy tests: the market's own state classes, built by hand (a V3 pool
from positions, the way the pool's bookkeeping records them)."""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils.address import to_checksum_address

from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.pools.uniswap_v3 import V3PoolState
from mevstack.market.uniswap_v3.tick_bitmap import flip_tick
from mevstack.market.uniswap_v3.tick_math import get_sqrt_ratio_at_tick

BLOCK = 100


def addr(n: int) -> str:
    return str(to_checksum_address(f"0x{n:040x}"))


def v2(
    n: int, t0: str, t1: str, r0: int, r1: int, dex: str = "uniswap-v2", fee_bps: int = 30
) -> V2PoolState:
    """A V2 pair holding ``r0`` of ``t0`` and ``r1`` of ``t1`` (sorted into token0/token1)."""
    a, b = (t0, t1) if t0.lower() < t1.lower() else (t1, t0)
    ra, rb = (r0, r1) if a == t0 else (r1, r0)
    return V2PoolState(addr(n), dex, a, b, fee_bps, ra, rb, BLOCK)


def v3(
    n: int,
    token0: str,
    token1: str,
    tick: int,
    positions: Sequence[tuple[int, int, int]],
    fee: int = 3000,
    spacing: int = 60,
) -> V3PoolState:
    """A V3 pool priced just above ``tick`` holding ``positions`` (lower, upper, liquidity)."""
    assert token0.lower() < token1.lower()
    bitmap: dict[int, int] = {}
    net: dict[int, int] = {}
    gross: dict[int, int] = {}
    for lower, upper, amount in positions:
        for t, delta in ((lower, amount), (upper, -amount)):
            if t not in net:
                flip_tick(bitmap, t, spacing)
                net[t] = gross[t] = 0
            net[t] += delta
            gross[t] += amount
    active = sum(amount for lower, upper, amount in positions if lower <= tick < upper)
    return V3PoolState(
        addr(n),
        "uniswap-v3",
        token0,
        token1,
        fee,
        spacing,
        get_sqrt_ratio_at_tick(tick) + 1,
        tick,
        active,
        net,
        gross,
        bitmap,
        BLOCK,
    )
