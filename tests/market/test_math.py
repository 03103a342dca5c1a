"""Pure math: known vectors from the Uniswap specs, inverse properties, and revert behaviour."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mevstack.market.errors import InsufficientLiquidity, MathRevert
from mevstack.market.uniswap_v2 import get_amount_in, get_amount_out, reserves_after_swap
from mevstack.market.uniswap_v3.full_math import (
    UINT256_MAX,
    div_rounding_up,
    mul_div,
    mul_div_rounding_up,
)
from mevstack.market.uniswap_v3.liquidity_math import add_delta
from mevstack.market.uniswap_v3.sqrt_price_math import (
    get_amount0_delta,
    get_amount1_delta,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
)
from mevstack.market.uniswap_v3.swap import simulate_swap
from mevstack.market.uniswap_v3.swap_math import compute_swap_step
from mevstack.market.uniswap_v3.tick_bitmap import flip_tick, next_initialized_tick_within_one_word
from mevstack.market.uniswap_v3.tick_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)

Q96 = 2**96


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    return math.isqrt(reserve1 * 2**192 // reserve0)


# -- Uniswap V2 --------------------------------------------------------------------------------


def test_v2_vectors_from_the_pair_spec() -> None:
    assert get_amount_out(10**18, 5 * 10**18, 10 * 10**18) == 1662497915624478906
    assert get_amount_out(10**18, 10 * 10**18, 5 * 10**18) == 453305446940074565
    assert get_amount_out(1, 100, 100, fee_bps=0) == 0
    assert get_amount_in(453305446940074565, 10 * 10**18, 5 * 10**18) <= 10**18


def test_v2_reverts_like_the_library() -> None:
    with pytest.raises(MathRevert):
        get_amount_out(0, 1, 1)
    with pytest.raises(InsufficientLiquidity):
        get_amount_out(1, 0, 1)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(100, 1000, 100)
    with pytest.raises(MathRevert, match="OVERFLOW"):
        reserves_after_swap(2**112 - 1, 10, True, 1, 0)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**112 - 1),
    st.integers(1, 2**112 - 1),
    st.integers(1, 2**100),
    st.sampled_from([0, 5, 25, 30, 100]),
)
def test_v2_amount_in_buys_at_least_amount_out(r_in: int, r_out: int, amt: int, fee: int) -> None:
    out = get_amount_out(amt, r_in, r_out, fee)
    assert 0 <= out < r_out
    if out > 0:
        needed = get_amount_in(out, r_in, r_out, fee)
        assert needed <= amt + 1  # getAmountIn always adds one wei
        assert get_amount_out(needed, r_in, r_out, fee) >= out


# -- full math and liquidity -----------------------------------------------------------------------


def test_mul_div_reverts() -> None:
    with pytest.raises(MathRevert):
        mul_div(1, 1, 0)
    with pytest.raises(MathRevert):
        mul_div(UINT256_MAX, UINT256_MAX, UINT256_MAX - 1)
    assert mul_div(UINT256_MAX, UINT256_MAX, UINT256_MAX) == UINT256_MAX
    with pytest.raises(MathRevert):
        mul_div_rounding_up(
            535006138814359, 432862656469423142931042426214547535783388063929571229938474969, 2
        )
    assert mul_div_rounding_up(Q96, 3, 2) == Q96 * 3 // 2
    assert mul_div_rounding_up(7, 1, 2) == 4
    assert div_rounding_up(7, 0) == 0


def test_add_delta() -> None:
    assert add_delta(1, -1) == 0
    with pytest.raises(MathRevert, match="LS"):
        add_delta(0, -1)
    with pytest.raises(MathRevert, match="LA"):
        add_delta(2**128 - 15, 15)


# -- TickMath -------------------------------------------------------------------------------


def test_tick_math_vectors() -> None:
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(0) == Q96
    assert get_sqrt_ratio_at_tick(MIN_TICK + 1) == 4295343490
    assert get_sqrt_ratio_at_tick(MAX_TICK - 1) == 1461373636630004318706518188784493106690254656249
    assert get_tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1
    with pytest.raises(MathRevert, match="T"):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    with pytest.raises(MathRevert, match="R"):
        get_tick_at_sqrt_ratio(MAX_SQRT_RATIO)
    with pytest.raises(MathRevert, match="R"):
        get_tick_at_sqrt_ratio(MIN_SQRT_RATIO - 1)


@settings(max_examples=500, deadline=None)
@given(st.integers(MIN_TICK, MAX_TICK - 1))
def test_tick_at_sqrt_ratio_is_the_greatest_tick_below(tick: int) -> None:
    ratio = get_sqrt_ratio_at_tick(tick)
    upper = get_sqrt_ratio_at_tick(tick + 1)
    assert ratio < upper
    assert get_tick_at_sqrt_ratio(ratio) == tick
    assert get_tick_at_sqrt_ratio(upper - 1) == tick


# -- SqrtPriceMath and SwapMath (vectors from the core test suite) ---------------------------------


def test_sqrt_price_math_vectors() -> None:
    one = encode_price_sqrt(1, 1)
    p121 = encode_price_sqrt(121, 100)
    assert get_next_sqrt_price_from_input(one, 10**18, 10**17, False) == p121
    assert get_next_sqrt_price_from_input(one, 10**18, 10**17, True) == (
        72025602285694852357767227579
    )
    assert get_amount0_delta(one, p121, 10**18, True) == 90909090909090910
    assert get_amount0_delta(one, p121, 10**18, False) == 90909090909090909
    assert get_amount1_delta(one, p121, 10**18, True) == 100000000000000000
    assert get_amount1_delta(one, p121, 10**18, False) == 99999999999999999
    with pytest.raises(MathRevert):
        get_next_sqrt_price_from_output(one, 1, 4, False)  # more token0 out than exists
    with pytest.raises(MathRevert):
        get_next_sqrt_price_from_input(one, 0, 1, True)


def test_swap_step_vectors() -> None:
    price = encode_price_sqrt(1, 1)
    target = encode_price_sqrt(101, 100)
    step = compute_swap_step(price, target, 2 * 10**18, 10**18, 600)
    assert step == (target, 9975124224178055, 9925619580021728, 5988667735148)
    out_step = compute_swap_step(price, target, 2 * 10**18, -(10**18), 600)
    assert out_step == (target, 9975124224178055, 9925619580021728, 5988667735148)
    partial = compute_swap_step(price, encode_price_sqrt(1000, 100), 2 * 10**18, 10**18, 600)
    assert partial.amount_in + partial.fee_amount == 10**18  # not capped: all is consumed


# -- TickBitmap and the swap loop -------------------------------------------------------------


def test_next_initialized_tick_stops_at_word_boundary() -> None:
    bitmap: dict[int, int] = {}
    for tick in (-200, -55, -4, 70, 78, 84, 139, 240, 535):
        flip_tick(bitmap, tick, 1)
    assert next_initialized_tick_within_one_word(bitmap, 78, 1, False) == (84, True)
    assert next_initialized_tick_within_one_word(bitmap, -55, 1, False) == (-4, True)
    assert next_initialized_tick_within_one_word(bitmap, 255, 1, False) == (511, False)
    assert next_initialized_tick_within_one_word(bitmap, 78, 1, True) == (78, True)
    assert next_initialized_tick_within_one_word(bitmap, 79, 1, True) == (78, True)
    assert next_initialized_tick_within_one_word(bitmap, 258, 1, True) == (256, False)
    assert next_initialized_tick_within_one_word(bitmap, -257, 1, True) == (-512, False)
    flip_tick(bitmap, 78, 1)
    assert next_initialized_tick_within_one_word(bitmap, 79, 1, True) == (70, True)
    with pytest.raises(MathRevert):
        flip_tick(bitmap, 5, 10)


def _one_range_pool(
    lower: int, upper: int, liquidity: int, spacing: int
) -> tuple[dict[int, int], dict[int, int]]:
    bitmap: dict[int, int] = {}
    flip_tick(bitmap, lower, spacing)
    flip_tick(bitmap, upper, spacing)
    return bitmap, {lower: liquidity, upper: -liquidity}


def test_swap_ending_on_a_tick_going_down_is_one_below() -> None:
    bitmap, net = _one_range_pool(-600, 600, 10**20, 60)
    limit = get_sqrt_ratio_at_tick(-600)
    outcome = simulate_swap(
        sqrt_price_x96=Q96,
        tick=0,
        liquidity=10**20,
        fee=3000,
        tick_spacing=60,
        bitmap=bitmap,
        liquidity_net=net,
        zero_for_one=True,
        amount_specified=10**30,
        sqrt_price_limit_x96=limit,
    )
    assert outcome.sqrt_price_x96 == limit
    assert outcome.tick == -601
    assert outcome.liquidity == 0
    assert outcome.initialized_ticks_crossed == 1
    up = simulate_swap(
        sqrt_price_x96=Q96,
        tick=0,
        liquidity=10**20,
        fee=3000,
        tick_spacing=60,
        bitmap=bitmap,
        liquidity_net=net,
        zero_for_one=False,
        amount_specified=10**30,
        sqrt_price_limit_x96=get_sqrt_ratio_at_tick(600),
    )
    assert up.tick == 600 and up.liquidity == 0


def _swap(zfo: bool, amount: int, limit: int | None = None, liquidity: int = 10**20) -> Any:
    bitmap, net = _one_range_pool(-6000, 6000, liquidity, 60)
    return simulate_swap(
        sqrt_price_x96=Q96,
        tick=0,
        liquidity=liquidity,
        fee=3000,
        tick_spacing=60,
        bitmap=bitmap,
        liquidity_net=net,
        zero_for_one=zfo,
        amount_specified=amount,
        sqrt_price_limit_x96=limit,
    )


def test_swap_reverts_like_the_pool() -> None:
    with pytest.raises(MathRevert, match="AS"):
        _swap(True, 0)
    with pytest.raises(MathRevert, match="SPL"):
        _swap(True, 1, Q96 + 1)
    with pytest.raises(MathRevert, match="SPL"):
        _swap(False, 1, Q96)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**24), st.booleans())
def test_exact_output_for_an_exact_input_result_costs_no_more(amount: int, zfo: bool) -> None:
    forward = _swap(zfo, amount, liquidity=10**21)
    out = -(forward.amount1 if zfo else forward.amount0)
    paid = forward.amount0 if zfo else forward.amount1
    if out > 0 and forward.liquidity > 0:
        back = _swap(zfo, -out, liquidity=10**21)
        assert -(back.amount1 if zfo else back.amount0) == out
        assert (back.amount0 if zfo else back.amount1) <= paid
