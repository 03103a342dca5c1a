"""Certified all-V2 sizing: the exact integer optimum on every path length, and honest labels."""

from __future__ import annotations

import math
import random
from decimal import Decimal, localcontext
from fractions import Fraction

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

from mevstack.strategy.pools import Mobius, V2Model
from mevstack.strategy.sizing import Leg, compose, evaluate, optimise
from mevstack.strategy.sizing.certify import _Split, certify
from mevstack.strategy.sizing.path import exact_curves
from tests.strategy.pools import addr, v2

V2M = V2Model()
TOKENS = [addr(0x10 + i) for i in range(6)]


def _gross(at: object) -> int:
    return at.gross_profit  # type: ignore[attr-defined,no-any-return]


def _legs(pools: list[tuple[int, int, int]]) -> list[Leg]:
    """A cycle TOKENS[0] -> TOKENS[1] -> ... -> TOKENS[0]; each pool (in, out, fee bps)."""
    hops = len(pools)
    path = [*TOKENS[:hops], TOKENS[0]]
    legs = []
    for i, (r_in, r_out, fee) in enumerate(pools):
        pool = v2(0x900 + i, path[i], path[i + 1], r_in, r_out, fee_bps=fee)
        legs.append(Leg(pool, V2M, path[i] == pool.token0))
    return legs


def _real_max_floor(m: Mobius) -> int:
    """``⌊max_x a·x/(b + c·x) − x⌋ = ⌊(√a − √b)² / c⌋``, in 80-digit decimals."""
    with localcontext() as ctx:
        ctx.prec = 80
        a, b, c = Decimal(m.a), Decimal(m.b), Decimal(m.c)
        return int(((a.sqrt() - b.sqrt()) ** 2 / c).to_integral_value(rounding="ROUND_FLOOR"))


def test_three_pool_cycle_that_the_fallback_mislabelled_is_sized_to_the_real_bound() -> None:
    """WETH -> T1 -> T2 -> WETH on three 30 bps pairs: the old fallback answered
    2144924870173145 wei and called it optimal; the input found here earns the floor of the
    real maximum, which no integer input can exceed, and the answer says it is proven."""
    legs = _legs(
        [
            (596230756184488280064, 3319064412601324032, 30),
            (143013079414607984, 1639264471530649856, 30),
            (5456909559906550784, 88126723755228545024, 30),
        ]
    )
    sized = optimise(legs, _gross)
    assert sized is not None and sized.proven
    curves = exact_curves(legs)
    assert curves is not None
    ceiling = _real_max_floor(compose(curves))
    assert ceiling == 2144924870173160
    assert sized.path.gross_profit == ceiling
    again = evaluate(legs, sized.path.amount_in)
    assert again is not None and again.amounts_out == sized.path.amounts_out
    assert sized.path.gross_profit > 2144924870173159  # the better input the report had found


def test_an_answer_without_its_certificate_says_so() -> None:
    """With no landings and no plateau to exhaust, the same cycle is answered but not proven,
    and its bound is above what it earns."""
    legs = _legs(
        [
            (596230756184488280064, 3319064412601324032, 30),
            (143013079414607984, 1639264471530649856, 30),
            (5456909559906550784, 88126723755228545024, 30),
        ]
    )
    curves = exact_curves(legs)
    assert curves is not None
    found = certify(curves, None, scan_budget=0, landing_budget=0)
    assert found is not None
    profit = found.amounts_out[-1] - found.amount_in
    assert found.proven == (profit >= found.bound)
    assert not found.proven and found.bound > profit


def _chain(curves: list[Mobius], x: int) -> int:
    for m in curves:
        x = m.a * x // (m.b + m.c * x)
    return x


_POOL = st.tuples(
    st.integers(300, 12_000),
    st.integers(-3, 3),  # the out reserve's skew from 1:1, in percent
    st.sampled_from([0, 1, 5, 30, 100, 300]),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pools=st.lists(_POOL, min_size=2, max_size=5),
    edge=st.integers(3, 45),
    cap=st.one_of(st.none(), st.integers(1, 3000)),
)
def test_optimise_is_the_exhaustive_integer_optimum_and_proven(
    pools: list[tuple[int, int, int]], edge: int, cap: int | None
) -> None:
    """Random reserves, fees and lengths (the first hop cheaper by ``edge`` percent, so most
    cycles pay): every input up to where the real profit turns negative is tried; the answer
    (capped or not) is that maximum, and proven."""
    skews = [s + (edge if i == 0 else 0) for i, (_, s, _) in enumerate(pools)]
    legs = _legs(
        [(r, r * (100 + s) // 100, fee) for (r, _, fee), s in zip(pools, skews, strict=True)]
    )
    curves = exact_curves(legs)
    assert curves is not None
    m = compose(curves)
    upto = max(1, (m.a - m.b) // m.c + 1) if m.a > m.b else 1
    if cap is not None:
        upto = min(upto, cap)
    upto = min(upto, 60_000)  # real profit is negative past (a − b)/c; these pools stay below
    best = max([_chain(curves, x) - x for x in range(1, upto + 1)] + [0])
    sized = optimise(legs, _gross, cap=cap)
    event("profitable" if best > 0 else "unprofitable")
    if best <= 0:
        assert sized is None
        return
    assert sized is not None and sized.proven
    assert sized.path.gross_profit == best
    assert cap is None or sized.path.amount_in <= cap


def _deep_cycle(rng: random.Random, hops: int) -> list[Leg]:
    """Pools of 10 .. 10,000 units deep at mixed prices whose product is 1, the first hop
    cheaper by 0.5 .. 6 %."""
    prices = [10 ** rng.uniform(-3, 3) for _ in range(hops - 1)]
    prices.append(1.0 / math.prod(prices) * (1.0 + rng.uniform(-0.001, 0.001)))
    prices[0] *= 1.0 + rng.uniform(0.005, 0.06)
    pools = []
    for price in prices:
        depth = rng.randrange(10, 10_000) * 10**18
        pools.append((depth, max(1, int(depth * price)), rng.choice([5, 30, 100])))
    return _legs(pools)


def test_deep_cycles_are_never_beaten_by_neighbours_or_the_bounded_search() -> None:
    """Deep pools of mixed prices, 2 to 5 hops: a proven answer earns its bound's value among
    every input nearby and at least what SciPy's bounded search finds; unproven ones are rare
    (counted) and still never beaten by that search."""
    rng = random.Random(41)
    proven = {hops: 0 for hops in range(2, 6)}
    total = dict(proven)
    for i in range(160):
        legs = _deep_cycle(rng, 2 + i % 4)
        sized = optimise(legs, _gross)
        curves = exact_curves(legs)
        assert curves is not None
        m = compose(curves)
        if sized is None:
            assert _real_max_floor(m) <= 0 or m.a <= m.b
            continue
        total[len(legs)] += 1
        proven[len(legs)] += sized.proven
        x0 = sized.path.amount_in
        for x in range(max(1, x0 - 300), x0 + 300):
            assert _chain(curves, x) - x <= sized.path.gross_profit
        upper = max(2.0, 2.0 * float((math.isqrt(m.a * m.b) - m.b) // m.c) + 2.0)
        found = minimize_scalar(
            lambda x, cs=curves: -float(_chain(cs, int(x)) - int(x)) if x >= 1 else 0.0,
            method="bounded",
            bounds=(1.0, upper),
            options={"xatol": 1.0},
        )
        assert _chain(curves, int(found.x)) - int(found.x) <= sized.path.gross_profit
    assert sum(total.values()) >= 100
    assert proven[2] == total[2]
    assert proven[3] >= 0.9 * total[3]
    print("proven of sized, by hops:", {h: f"{proven[h]}/{total[h]}" for h in total})


def test_the_bound_and_its_plateau_are_exact_on_small_pools() -> None:
    """The certificate's parts against brute force: ``top`` is the largest ``⌊P(v)⌋`` over
    every integer ``v`` (with its ``v``), ``interval`` is exactly the ``v`` with
    ``P(v) >= p``, and ``gain`` never exceeds ``⌊P(v)⌋``."""
    rng = random.Random(17)
    checked = 0
    for _ in range(200):
        hops = rng.randint(2, 4)
        curves = [
            Mobius(g * rng.randint(50, 900), 10_000 * rng.randint(50, 900), g, True)
            for g in (10_000 - rng.choice([0, 30, 300]) for _ in range(hops))
        ]
        j = rng.randint(1, hops - 1)
        split = _Split(curves, j)
        a1, b1, c1 = split.pre
        a2, b2, c2 = split.post
        limit = (a1 - 1) // c1
        values = {
            v: Fraction(a2 * v, b2 + c2 * v) - Fraction(b1 * v, a1 - c1 * v)
            for v in range(1, limit + 1)
        }
        found = split.top(limit)
        best = max(values.values(), default=Fraction(0))
        if best < 1:
            assert found is None or found[1] == math.floor(best)
            continue
        assert found is not None
        v0, top = found
        assert top == math.floor(best) and math.floor(values[v0]) == top
        for p in {top, top - 1, max(1, top // 2)}:
            lo, hi = split.interval(p, v0, limit)
            assert [v for v, value in values.items() if value >= p] == list(range(lo, hi + 1))
        for v in values:
            gain = split.gain(v)
            assert gain is None or gain <= math.floor(values[v])
        checked += 1
    assert checked >= 50
