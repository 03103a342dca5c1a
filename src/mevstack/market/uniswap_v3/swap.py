"""The swap loop of ``UniswapV3Pool.swap``, as a pure function of a pool's state.

Each step goes to the nearer of the next initialised tick (or the end of the current bitmap
word), the price limit and the point where the amount runs out; each step rounds on its own.
Crossing an initialised tick applies its liquidity-net (negated when moving left).  The tick
after the swap follows the contract: after ending exactly on a tick boundary going down the tick
is one below it; otherwise, if the price moved, it is the tick at the new price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from mevstack.market.errors import MathRevert
from mevstack.market.uniswap_v3.full_math import INT256_MAX, INT256_MIN, to_int256
from mevstack.market.uniswap_v3.liquidity_math import add_delta
from mevstack.market.uniswap_v3.swap_math import compute_swap_step
from mevstack.market.uniswap_v3.tick_bitmap import next_initialized_tick_within_one_word
from mevstack.market.uniswap_v3.tick_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)


class V3SwapOutcome(NamedTuple):
    """What ``UniswapV3Pool.swap`` returns and leaves behind.

    ``amount0``/``amount1`` are the pool's deltas (positive: the pool receives).
    """

    amount0: int
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    initialized_ticks_crossed: int
    steps: int


def default_price_limit(zero_for_one: bool) -> int:
    """The loosest limit a swap may use (what QuoterV2 uses when given 0)."""
    return MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1


def simulate_swap(
    *,
    sqrt_price_x96: int,
    tick: int,
    liquidity: int,
    fee: int,
    tick_spacing: int,
    bitmap: Mapping[int, int],
    liquidity_net: Mapping[int, int],
    zero_for_one: bool,
    amount_specified: int,
    sqrt_price_limit_x96: int | None = None,
) -> V3SwapOutcome:
    """Run the pool's swap: ``amount_specified`` > 0 exact input, < 0 exact output."""
    if amount_specified == 0:
        raise MathRevert("AS", "amount specified is zero")
    if not INT256_MIN <= amount_specified <= INT256_MAX:
        raise MathRevert("AS", "amount does not fit int256")
    if sqrt_price_x96 == 0:
        raise MathRevert("LOK", "pool is not initialised")
    limit = (
        default_price_limit(zero_for_one) if sqrt_price_limit_x96 is None else sqrt_price_limit_x96
    )
    if zero_for_one:
        if not (MIN_SQRT_RATIO < limit < sqrt_price_x96):
            raise MathRevert("SPL", "price limit must be below the price and above the minimum")
    elif not (sqrt_price_x96 < limit < MAX_SQRT_RATIO):
        raise MathRevert("SPL", "price limit must be above the price and below the maximum")

    exact_input = amount_specified > 0
    remaining = amount_specified
    calculated = 0
    price = sqrt_price_x96
    current_tick = tick
    current_liquidity = liquidity
    crossed = 0
    steps = 0
    while remaining != 0 and price != limit:
        steps += 1
        start_price = price
        tick_next, initialized = next_initialized_tick_within_one_word(
            bitmap, current_tick, tick_spacing, zero_for_one
        )
        if tick_next < MIN_TICK:
            tick_next = MIN_TICK
        elif tick_next > MAX_TICK:
            tick_next = MAX_TICK
        price_next = get_sqrt_ratio_at_tick(tick_next)
        if zero_for_one:
            target = limit if price_next < limit else price_next
        else:
            target = limit if price_next > limit else price_next
        price, amount_in, amount_out, fee_amount = compute_swap_step(
            price, target, current_liquidity, remaining, fee
        )
        if exact_input:
            remaining -= to_int256(amount_in + fee_amount)
            calculated -= to_int256(amount_out)
        else:
            remaining += to_int256(amount_out)
            calculated += to_int256(amount_in + fee_amount)
        if price == price_next:
            if initialized:
                net = liquidity_net.get(tick_next, 0)
                current_liquidity = add_delta(current_liquidity, -net if zero_for_one else net)
                crossed += 1
            current_tick = tick_next - 1 if zero_for_one else tick_next
        elif price != start_price:
            current_tick = get_tick_at_sqrt_ratio(price)

    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    return V3SwapOutcome(amount0, amount1, price, current_tick, current_liquidity, crossed, steps)
