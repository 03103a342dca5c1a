"""What the devnet seeds: tokens, their reference prices, and the pools with their liquidity plan.

Pure data and arithmetic, no I/O: ``deploy.py`` turns this plan into transactions.  Prices are
realistic USD references (ETH ~ 3000, BTC ~ 95000); each DEX gets a small, seeded price skew so
the two V2 DEXes and the V3 pools disagree a little, as real venues do.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction

Q96 = 2**96
MIN_TICK = -887272
MAX_TICK = 887272
V3_TICK_SPACING = {500: 10, 3000: 60, 10000: 200}  # the tiers the shipped factory enables


@dataclass(frozen=True, slots=True)
class TokenSpec:
    symbol: str
    name: str
    decimals: int
    usd: Fraction
    no_bool: bool = False  # USDT-style: transfer/transferFrom/approve return nothing


TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("USDC", "USD Coin", 6, Fraction(1)),
    TokenSpec("USDT", "Tether USD", 6, Fraction(1), no_bool=True),
    TokenSpec("DAI", "Dai Stablecoin", 18, Fraction(1)),
    TokenSpec("WBTC", "Wrapped BTC", 8, Fraction(95_000)),
    TokenSpec("LINK", "ChainLink Token", 18, Fraction(15)),
)
WETH_SPEC = TokenSpec("WETH", "Wrapped Ether", 18, Fraction(3_000))
ALL_TOKENS: dict[str, TokenSpec] = {t.symbol: t for t in (WETH_SPEC, *TOKENS)}

# (symbol A, symbol B, total USD value) seeded on each V2 DEX.
V2_PAIRS: tuple[tuple[str, str, int], ...] = (
    ("WETH", "USDC", 4_000_000),
    ("WETH", "USDT", 2_000_000),
    ("WETH", "DAI", 2_000_000),
    ("WBTC", "WETH", 3_000_000),
    ("LINK", "WETH", 1_000_000),
    ("USDC", "USDT", 1_000_000),
    ("USDC", "DAI", 1_000_000),
)
# (symbol A, symbol B, fee in hundredths of a bip, total USD budget over its positions).
V3_POOLS: tuple[tuple[str, str, int, int], ...] = (
    ("WETH", "USDC", 500, 6_000_000),
    ("WETH", "USDC", 3000, 2_000_000),
    ("WETH", "USDT", 3000, 2_000_000),
    ("WBTC", "WETH", 3000, 3_000_000),
    ("LINK", "WETH", 10000, 1_000_000),
    ("USDC", "DAI", 500, 1_000_000),
)
# Each V3 pool gets one position per range: (half-width as a price ratio, share of the budget).
V3_RANGES: tuple[tuple[Fraction, Fraction], ...] = (
    (Fraction(3, 2), Fraction(2, 10)),
    (Fraction(11, 10), Fraction(3, 10)),
    (Fraction(102, 100), Fraction(5, 10)),
)
TOKEN_SUPPLY_WHOLE = 10**12  # minted to the deployer: enough to seed pools and fund traders


def token_amount(symbol: str, usd: Fraction) -> int:
    """Raw units of ``symbol`` worth ``usd`` at the reference price (rounded down)."""
    spec = ALL_TOKENS[symbol]
    return int(usd / spec.usd * 10**spec.decimals)


def skews(seed: int, count: int) -> list[Fraction]:
    """Per-pool price multipliers in ±[0.1%, 1.2%]: small, seeded, reproducible disagreements."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        size = Fraction(rng.randint(10, 120), 10_000)
        out.append(1 + size if rng.random() < 0.5 else 1 - size)
    return out


@dataclass(frozen=True, slots=True)
class V2Seed:
    """Liquidity for one V2 pair, by symbol (``addLiquidity`` uses both amounts exactly)."""

    symbol_a: str
    symbol_b: str
    amount_a: int
    amount_b: int


def v2_plan(skew: list[Fraction]) -> list[V2Seed]:
    seeds = []
    for (a, b, usd), k in zip(V2_PAIRS, skew, strict=True):
        half = Fraction(usd, 2)
        seeds.append(V2Seed(a, b, token_amount(a, half), token_amount(b, half * k)))
    return seeds


def sqrt_price_x96(price1_per_0: Fraction) -> int:
    """Q64.96 square root of a raw-unit price (token1 per token0), rounded down."""
    return math.isqrt(price1_per_0.numerator * 2**192 // price1_per_0.denominator)


def approx_tick(price1_per_0: Fraction) -> int:
    """floor(log_1.0001(price)) by floating point: only used to place position ranges."""
    return math.floor(math.log(price1_per_0) / math.log(1.0001))


@dataclass(frozen=True, slots=True)
class V3PositionPlan:
    tick_lower: int
    tick_upper: int
    amount0_desired: int
    amount1_desired: int


@dataclass(frozen=True, slots=True)
class V3PoolPlan:
    token0: str  # symbols, sorted by token address
    token1: str
    fee: int
    tick_spacing: int
    sqrt_price_x96: int
    positions: tuple[V3PositionPlan, ...]


def v3_pool_plan(token0: str, token1: str, fee: int, budget_usd: int, skew: Fraction) -> V3PoolPlan:
    """One pool: its initial price and one position per range of ``V3_RANGES``.

    ``token0``/``token1`` are already in address order.  Each position offers half its budget in
    each token; the position manager takes the liquidity the scarcer side allows.
    """
    t0, t1 = ALL_TOKENS[token0], ALL_TOKENS[token1]
    price = t0.usd / t1.usd * Fraction(10**t1.decimals, 10**t0.decimals) * skew
    spacing = V3_TICK_SPACING[fee]
    tick = approx_tick(price)
    positions = []
    for ratio, share in V3_RANGES:
        width = math.ceil(math.log(ratio) / math.log(1.0001))
        lower = max(((tick - width) // spacing) * spacing, -(-MIN_TICK // spacing) * spacing)
        upper = min(-((-(tick + width)) // spacing) * spacing, (MAX_TICK // spacing) * spacing)
        half = Fraction(budget_usd) * share / 2
        positions.append(
            V3PositionPlan(lower, upper, token_amount(token0, half), token_amount(token1, half))
        )
    return V3PoolPlan(token0, token1, fee, spacing, sqrt_price_x96(price), tuple(positions))
