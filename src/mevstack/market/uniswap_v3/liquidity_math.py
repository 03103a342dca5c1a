"""LiquidityMath.addDelta: a signed liquidity change applied to uint128 liquidity."""

from __future__ import annotations

from mevstack.market.errors import MathRevert
from mevstack.market.uniswap_v3.full_math import UINT128_MAX


def add_delta(x: int, y: int) -> int:
    """x + y for uint128 x and int128 y; reverts 'LS' on underflow and 'LA' on overflow."""
    z = x + y
    if y < 0:
        if z < 0:
            raise MathRevert("LS", "liquidity underflow")
    elif z > UINT128_MAX:
        raise MathRevert("LA", "liquidity overflow")
    return z
