"""TickMath: sqrt(1.0001^tick) in Q64.96 for a tick, and the greatest tick at or below a price.

``get_sqrt_ratio_at_tick`` multiplies the Q128.128 factors 1/sqrt(1.0001)^(2^i) selected by the
tick's bits, exactly as the contract does (these constants are protocol facts).
``get_tick_at_sqrt_ratio`` returns what the contract defines: the greatest tick whose ratio is
<= the price.  It starts from a float estimate and corrects it with the exact forward function,
so the answer is the contract's by definition, not by approximation.
"""

from __future__ import annotations

import math

from mevstack.market.errors import MathRevert
from mevstack.market.uniswap_v3.full_math import UINT256_MAX

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

_FACTORS: tuple[tuple[int, int], ...] = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)
_ODD_FACTOR = 0xFFFCB933BD6FAD37AA2D162D1A594001
_LOG_SQRT_10001 = math.log(1.0001) / 2


def get_sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick; reverts 'T' when |tick| > MAX_TICK."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise MathRevert("T", f"tick {tick} out of range")
    ratio = _ODD_FACTOR if abs_tick & 0x1 else 1 << 128
    for bit, factor in _FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = UINT256_MAX // ratio
    # Round up so that getTickAtSqrtRatio of the result gives back the tick.
    return (ratio >> 32) + (1 if ratio & 0xFFFFFFFF else 0)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio; reverts 'R' outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise MathRevert("R", f"sqrt price {sqrt_price_x96} out of range")
    # log of an int above float range is still exact enough for an estimate within a tick or two.
    estimate = math.floor((math.log(sqrt_price_x96) - 96 * math.log(2)) / _LOG_SQRT_10001)
    tick = min(max(estimate, MIN_TICK), MAX_TICK)
    while tick > MIN_TICK and get_sqrt_ratio_at_tick(tick) > sqrt_price_x96:
        tick -= 1
    while tick < MAX_TICK and get_sqrt_ratio_at_tick(tick + 1) <= sqrt_price_x96:
        tick += 1
    return tick
