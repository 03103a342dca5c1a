"""SqrtPriceMath: next sqrt price from an amount, and token amounts between two sqrt prices.

Every rounding direction is the contract's: prices move so the pool never gives away more than it
receives (amount0 moves round the price up, amount1 moves round it down), input amounts round up
and output amounts round down.
"""

from __future__ import annotations

from mevstack.market.errors import MathRevert
from mevstack.market.uniswap_v3.full_math import (
    Q96,
    UINT160_MAX,
    UINT256_MAX,
    div_rounding_up,
    mul_div,
    mul_div_rounding_up,
    to_int256,
    to_uint160,
)


def get_next_sqrt_price_from_amount0_rounding_up(
    sqrt_px96: int, liquidity: int, amount: int, add: bool
) -> int:
    """The price after adding (``add``) or removing ``amount`` of token0, rounded up."""
    if amount == 0:
        return sqrt_px96
    numerator1 = liquidity << 96
    product = amount * sqrt_px96
    if add:
        if product <= UINT256_MAX:
            denominator = numerator1 + product
            if denominator <= UINT256_MAX:
                return mul_div_rounding_up(numerator1, sqrt_px96, denominator)
        # The overflow-safe form of the same formula, as the contract falls back to it.
        divisor = numerator1 // sqrt_px96 + amount
        if divisor > UINT256_MAX:
            raise MathRevert("add", "overflow in amount0 price fallback")
        return div_rounding_up(numerator1, divisor)
    if product > UINT256_MAX or numerator1 <= product:
        raise MathRevert("amount0", "removing more token0 than the range holds")
    return to_uint160(mul_div_rounding_up(numerator1, sqrt_px96, numerator1 - product))


def get_next_sqrt_price_from_amount1_rounding_down(
    sqrt_px96: int, liquidity: int, amount: int, add: bool
) -> int:
    """The price after adding (``add``) or removing ``amount`` of token1, rounded down."""
    if add:
        if amount <= UINT160_MAX:
            quotient = (amount << 96) // liquidity
        else:
            quotient = mul_div(amount, Q96, liquidity)
        return to_uint160(sqrt_px96 + quotient)
    if amount <= UINT160_MAX:
        quotient = div_rounding_up(amount << 96, liquidity)
    else:
        quotient = mul_div_rounding_up(amount, Q96, liquidity)
    if sqrt_px96 <= quotient:
        raise MathRevert("amount1", "removing more token1 than the range holds")
    return sqrt_px96 - quotient


def get_next_sqrt_price_from_input(
    sqrt_px96: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    """The price after ``amount_in`` enters the pool (rounded so the pool is never short)."""
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise MathRevert("input", "zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_in, True)
    return get_next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(
    sqrt_px96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    """The price after ``amount_out`` leaves the pool (rounded so the pool is never short)."""
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise MathRevert("output", "zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount1_rounding_down(
            sqrt_px96, liquidity, amount_out, False
        )
    return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """liquidity / sqrt(lower) - liquidity / sqrt(upper) of token0, rounded as asked."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise MathRevert("amount0Delta", "zero sqrt price")
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """liquidity * (sqrt(upper) - sqrt(lower)) of token1, rounded as asked."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


def get_amount0_delta_signed(sqrt_a: int, sqrt_b: int, liquidity: int) -> int:
    """Signed token0 delta for a signed liquidity change (negative: the pool pays, rounded down)."""
    if liquidity < 0:
        return -to_int256(get_amount0_delta(sqrt_a, sqrt_b, -liquidity, False))
    return to_int256(get_amount0_delta(sqrt_a, sqrt_b, liquidity, True))


def get_amount1_delta_signed(sqrt_a: int, sqrt_b: int, liquidity: int) -> int:
    """Signed token1 delta for a signed liquidity change (negative: the pool pays, rounded down)."""
    if liquidity < 0:
        return -to_int256(get_amount1_delta(sqrt_a, sqrt_b, -liquidity, False))
    return to_int256(get_amount1_delta(sqrt_a, sqrt_b, liquidity, True))
