"""DEX kinds, one module each, behind :class:`mevstack.market.base.PoolKind`; ``KINDS`` by name."""

from __future__ import annotations

from mevstack.market.base import PoolKind
from mevstack.market.pools.uniswap_v2 import UNISWAP_V2, UniswapV2Kind, V2PoolState
from mevstack.market.pools.uniswap_v3 import UNISWAP_V3, UniswapV3Kind, V3PoolState

KINDS: dict[str, PoolKind] = {UNISWAP_V2.kind: UNISWAP_V2, UNISWAP_V3.kind: UNISWAP_V3}

__all__ = [
    "KINDS",
    "UNISWAP_V2",
    "UNISWAP_V3",
    "UniswapV2Kind",
    "UniswapV3Kind",
    "V2PoolState",
    "V3PoolState",
]
