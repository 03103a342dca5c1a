"""FullMath and UnsafeMath: 512-bit-exact multiply-divide with uint256 results.

Python integers are unbounded, so the 512-bit intermediate is free; what must be reproduced is
where the contract reverts (zero denominator, result above uint256).
"""

from __future__ import annotations

from mevstack.market.errors import MathRevert

UINT256_MAX = (1 << 256) - 1
UINT160_MAX = (1 << 160) - 1
UINT128_MAX = (1 << 128) - 1
INT256_MAX = (1 << 255) - 1
INT256_MIN = -(1 << 255)
Q96 = 1 << 96


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a * b / denominator); reverts on a zero denominator or a result above uint256."""
    if denominator == 0:
        raise MathRevert("mulDiv", "division by zero")
    result = a * b // denominator
    if result > UINT256_MAX:
        raise MathRevert("mulDiv", "result overflows uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a * b / denominator) with the same reverts as mul_div."""
    if denominator == 0:
        raise MathRevert("mulDiv", "division by zero")
    quotient, remainder = divmod(a * b, denominator)
    if remainder:
        # The contract checks the floor first, then that the +1 does not overflow.
        if quotient >= UINT256_MAX:
            raise MathRevert("mulDiv", "result overflows uint256")
        quotient += 1
    elif quotient > UINT256_MAX:
        raise MathRevert("mulDiv", "result overflows uint256")
    return quotient


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp: ceil(x / y); a zero ``y`` gives 0 in the EVM, never a revert."""
    if y == 0:
        return 0
    quotient, remainder = divmod(x, y)
    return quotient + (1 if remainder else 0)


def to_uint160(value: int) -> int:
    """SafeCast.toUint160."""
    if value > UINT160_MAX:
        raise MathRevert("toUint160", "value overflows uint160")
    return value


def to_int256(value: int) -> int:
    """SafeCast.toInt256 of a uint256."""
    if value > INT256_MAX:
        raise MathRevert("toInt256", "value overflows int256")
    return value
