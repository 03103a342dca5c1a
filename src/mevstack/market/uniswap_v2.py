"""Uniswap V2 constant-product math, exactly as UniswapV2Library/UniswapV2Pair compute it.

Forks that charge another fee differ only in ``fee_bps`` (Uniswap: 30 = 0.30 %).  The library's
``getAmountOut``/``getAmountIn`` multiply by ``10000 - fee_bps`` and ``10000``; reserves are
uint112 and the pair's K check is what bounds the result.
"""

from __future__ import annotations

from mevstack.market.errors import InsufficientLiquidity, MathRevert

UINT112_MAX = (1 << 112) - 1
UINT256_MAX = (1 << 256) - 1
FEE_DENOMINATOR = 10_000


def _check_fee(fee_bps: int) -> None:
    if not 0 <= fee_bps < FEE_DENOMINATOR:
        raise MathRevert("FEE", f"fee_bps {fee_bps} outside [0, {FEE_DENOMINATOR})")


def _check_u256(value: int, what: str) -> int:
    if value > UINT256_MAX:
        raise MathRevert("ds-math-mul-overflow", what)
    return value


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    """UniswapV2Library.getAmountOut: the output for ``amount_in`` (rounded down)."""
    if amount_in <= 0:
        raise MathRevert("INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity("INSUFFICIENT_LIQUIDITY")
    _check_fee(fee_bps)
    amount_in_with_fee = _check_u256(amount_in * (FEE_DENOMINATOR - fee_bps), "amountIn * fee")
    numerator = _check_u256(amount_in_with_fee * reserve_out, "numerator")
    denominator = _check_u256(reserve_in * FEE_DENOMINATOR, "reserveIn * 10000")
    denominator = _check_u256(denominator + amount_in_with_fee, "denominator")
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    """UniswapV2Library.getAmountIn: the input needed for ``amount_out`` (rounded up by +1)."""
    if amount_out <= 0:
        raise MathRevert("INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity("INSUFFICIENT_LIQUIDITY")
    _check_fee(fee_bps)
    if amount_out >= reserve_out:
        # The library would underflow (reserveOut - amountOut): ds-math-sub-underflow.
        raise InsufficientLiquidity("ds-math-sub-underflow", "amount_out >= reserve_out")
    numerator = _check_u256(reserve_in * amount_out * FEE_DENOMINATOR, "numerator")
    denominator = (reserve_out - amount_out) * (FEE_DENOMINATOR - fee_bps)
    return numerator // denominator + 1


def reserves_after_swap(
    reserve0: int, reserve1: int, zero_for_one: bool, amount_in: int, amount_out: int
) -> tuple[int, int]:
    """The pair's reserves after a swap paying ``amount_in`` and taking ``amount_out``.

    Raises like the pair does when the new balances do not fit uint112 (``UniswapV2: OVERFLOW``).
    """
    if zero_for_one:
        new0, new1 = reserve0 + amount_in, reserve1 - amount_out
    else:
        new0, new1 = reserve0 - amount_out, reserve1 + amount_in
    if new0 < 0 or new1 < 0:
        raise InsufficientLiquidity("INSUFFICIENT_LIQUIDITY")
    if new0 > UINT112_MAX or new1 > UINT112_MAX:
        raise MathRevert("OVERFLOW", "reserve does not fit uint112")
    return new0, new1
