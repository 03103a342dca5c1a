"""Sizing: Möbius composition exactness, and optimality against brute force on small pools."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.pools.uniswap_v3 import V3PoolState
from mevstack.market.uniswap_v2 import get_amount_out
from mevstack.market.uniswap_v3.swap import simulate_swap
from mevstack.strategy.pools import Mobius, V2Model, V3Model
from mevstack.strategy.sizing import (
    Leg,
    PathEval,
    compose,
    evaluate,
    minimal_input,
    mobius_optimum,
    optimise,
)
from mevstack.strategy.sizing.closed_form import profit_top, two_v2
from mevstack.strategy.sizing.search import refine_target
from tests.strategy.pools import addr, v2, v3

WETH, TKN, OTHER = addr(1), addr(2), addr(3)
V2M = V2Model()
V3M = V3Model()


def v2_leg(pool: V2PoolState, token_in: str) -> Leg:
    return Leg(pool, V2M, token_in == pool.token0)


def gross(at: PathEval) -> int:
    return at.gross_profit


def brute_best(legs: list[Leg], upto: int) -> tuple[int, int]:
    best, best_x = 0, 0
    for x in range(1, upto + 1):
        at = evaluate(legs, x)
        if at is not None and at.gross_profit > best:
            best, best_x = at.gross_profit, x
    return best, best_x


def test_v2_hop_is_the_librarys_get_amount_out() -> None:
    rng = random.Random(1)
    for _ in range(300):
        r0, r1 = rng.randrange(1, 10**24), rng.randrange(1, 10**24)
        fee = rng.choice([0, 25, 30, 100])
        pool = V2PoolState(addr(9), "u", WETH, TKN, fee, r0, r1, 1)
        x = rng.randrange(1, 10**22)
        quote = V2M.quote(pool, True, x)
        expected = get_amount_out(x, r0, r1, fee)
        assert (quote.amount_out if quote else 0) == expected
        curve = V2M.mobius(pool, True)
        assert curve is not None and curve.exact
        assert curve.a * x // (curve.b + curve.c * x) == expected


def test_mobius_composition_is_exact() -> None:
    rng = random.Random(2)
    for _ in range(100):
        hops = rng.choice([2, 3])
        tokens = [*[WETH, TKN, OTHER][:hops], WETH]
        legs = [
            v2_leg(
                v2(
                    20 + i,
                    tokens[i],
                    tokens[i + 1],
                    rng.randrange(10**6, 10**22),
                    rng.randrange(10**6, 10**22),
                ),
                tokens[i],
            )
            for i in range(hops)
        ]
        curves = [leg.model.mobius(leg.state, leg.zero_for_one) for leg in legs]
        assert all(c is not None for c in curves)
        m = compose([c for c in curves if c is not None])
        x = rng.randrange(1, 10**21)
        real = Fraction(x)
        for c in curves:
            assert c is not None
            real = Fraction(c.a) * real / (c.b + c.c * real)
        assert Fraction(m.a * x, m.b + m.c * x) == real
        # the contract floors at every hop: the integer path never beats the real curve, and
        # equals hop-by-hop integer evaluation
        at = evaluate(legs, x)
        ints = x
        for leg in legs:
            q = leg.model.quote(leg.state, leg.zero_for_one, ints)
            ints = q.amount_out if q else 0
        assert (at.amount_out if at else 0) == ints
        assert ints <= m.a * x // (m.b + m.c * x)


@pytest.mark.parametrize("seed", range(8))
def test_v2_closed_form_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    hops = 2 if seed % 2 else 3
    tokens = [*[WETH, TKN, OTHER][:hops], WETH]
    # reserves small enough to try every input; mispriced by 2-10 %
    legs = []
    for i in range(hops):
        r = rng.randrange(400_000, 1_000_000)
        skew = Fraction(rng.randrange(102, 110), 100) if i == 0 else Fraction(1)
        legs.append(v2_leg(v2(30 + i, tokens[i], tokens[i + 1], r, int(r * skew)), tokens[i]))
    sized = optimise(legs, gross)
    best, best_x = brute_best(legs, 60_000)
    assert best > 0 and sized is not None
    assert sized.path.gross_profit * 1000 >= best * 999, (sized.path, best, best_x)
    if hops == 2:  # the last-hop phase search proves the exact integer optimum
        assert sized.path.gross_profit == best
    assert sized.net == sized.path.gross_profit
    assert evaluate(legs, sized.path.amount_in) == sized.path


def test_v2_large_reserves_beat_neighbours_and_respect_cap() -> None:
    legs = [
        v2_leg(v2(41, WETH, TKN, 500 * 10**18, 1_030_000 * 10**6), WETH),
        v2_leg(v2(40, TKN, WETH, 1_000_000 * 10**6, 500 * 10**18), TKN),
    ]
    sized = optimise(legs, gross)
    assert sized is not None
    x = sized.path.amount_in
    for dx in (-(10**12), -1000, -1, 1, 1000, 10**12):
        other = evaluate(legs, x + dx)
        assert other is None or other.gross_profit <= sized.path.gross_profit
    capped = optimise(legs, gross, cap=x // 3)
    assert capped is not None and capped.path.amount_in <= x // 3
    assert capped.path.gross_profit < sized.path.gross_profit
    assert optimise(legs, gross, cap=0) is None


def test_no_profit_no_size() -> None:
    legs = [
        v2_leg(v2(50, WETH, TKN, 10**21, 2 * 10**21), WETH),
        v2_leg(v2(51, TKN, WETH, 2 * 10**21, 10**21), TKN),
    ]
    assert mobius_optimum(compose([V2M.mobius(g.state, g.zero_for_one) for g in legs])) == 0  # type: ignore[misc]
    assert optimise(legs, gross) is None


def test_minimal_input_is_least() -> None:
    legs = [
        v2_leg(v2(60, WETH, TKN, 123_456_789, 987_654_321), WETH),
        v2_leg(v2(61, TKN, WETH, 555_555_555, 111_111_111), TKN),
    ]
    for y in (1, 17, 1000, 54_321):
        x = minimal_input(legs, y)
        assert x is not None
        assert evaluate(legs, x).amount_out >= y  # type: ignore[union-attr]
        below = evaluate(legs, x - 1)
        assert below is None or below.amount_out < y


# --- paths through V3: tick crossings cost gas -------------------------------------------------


def v3_v2_legs(width_ticks: int) -> list[Leg]:
    # WETH < TKN by address: token0 = WETH; price (TKN per WETH) ~1 at tick 0, several narrow
    # positions stacked around it so the optimum crosses initialised ticks
    positions = [(-width_ticks * k, width_ticks * k, 4 * 10**9) for k in range(1, 8)]
    pool3 = v3(70, WETH, TKN, 0, positions, fee=500, spacing=10)
    pool2 = v2(71, TKN, WETH, 10**12, 10**12 * 103 // 100)
    return [Leg(pool3, V3M, True), v2_leg(pool2, TKN)]


def net_with_ticks(price: int):  # type: ignore[no-untyped-def]
    def net(at: PathEval) -> int:
        return at.gross_profit - price * at.total_ticks

    return net


@pytest.mark.parametrize(("width", "tick_cost"), [(10, 0), (10, 2_000_000), (20, 6_000_000)])
def test_v3_path_never_beaten_by_dense_scan(width: int, tick_cost: int) -> None:
    legs = v3_v2_legs(width)
    net = net_with_ticks(tick_cost)
    sized = optimise(legs, net)
    assert sized is not None
    top = 3 * max(sized.path.amount_in, 10**7)
    best = sized.net
    best_x = sized.path.amount_in
    step = max(1, top // 800)
    for x in range(step, top, step):
        at = evaluate(legs, x)
        if at is not None and net(at) > best:
            best, best_x = net(at), x
    # refine the scan's best point densely around it
    for x in range(max(1, best_x - step), best_x + step, max(1, step // 50)):
        at = evaluate(legs, x)
        if at is not None and net(at) > best:
            best = net(at)
    assert sized.net * 1000 >= best * 999, (sized, best)


def test_gas_per_tick_moves_the_net_optimum_below_the_gross_one() -> None:
    legs = v3_v2_legs(10)
    gross_opt = optimise(legs, net_with_ticks(0))
    net_opt = optimise(legs, net_with_ticks(6_000_000))
    assert gross_opt is not None and net_opt is not None
    assert gross_opt.path.total_ticks > 0
    assert net_opt.path.total_ticks < gross_opt.path.total_ticks
    assert net_opt.path.amount_in < gross_opt.path.amount_in
    assert net_opt.net > gross_opt.path.gross_profit - 6_000_000 * gross_opt.path.total_ticks


@pytest.mark.parametrize("tick_cost", [0, 100_000])
def test_two_v3_legs_crossing_ticks_use_the_generic_search(tick_cost: int) -> None:
    # WETH/TKN priced 1.0 in one pool and ~1.06 in the other, both with narrow stacked positions
    positions = [(-10 * k, 10 * k, 3 * 10**9) for k in range(1, 6)]
    cheap = v3(80, WETH, TKN, 0, positions, fee=500, spacing=10)
    dear = v3(81, WETH, TKN, 600, [(600 + lo, 600 + hi, a) for lo, hi, a in positions], 500, 10)
    legs = [Leg(dear, V3M, True), Leg(cheap, V3M, False)]  # sell WETH dear, buy it back cheap
    net = net_with_ticks(tick_cost)
    sized = optimise(legs, net)
    assert sized is not None
    if tick_cost == 0:  # both legs cross ticks: no single piecewise leg describes the path
        assert all(t > 0 for t in sized.path.ticks_crossed)
    best = sized.net
    top = 3 * sized.path.amount_in
    for x in range(top // 600, top, top // 600):
        at = evaluate(legs, x)
        if at is not None:
            best = max(best, net(at))
    assert sized.net * 1000 >= best * 999


def test_extreme_reserves_never_raise() -> None:
    rng = random.Random(9)
    for _ in range(300):
        hops = rng.choice([2, 3])
        tokens = [*[WETH, TKN, OTHER][:hops], WETH]
        legs = [
            v2_leg(
                v2(90 + i, tokens[i], tokens[i + 1], 2 ** rng.randrange(1, 112),
                   2 ** rng.randrange(1, 112)),
                tokens[i],
            )
            for i in range(hops)
        ]  # fmt: skip
        sized = optimise(legs, gross)
        if sized is not None:
            assert sized.path.gross_profit > 0
            assert evaluate(legs, sized.path.amount_in) == sized.path


# --- the exact fast paths: proofs on small pools, equality with the pool's own arithmetic ------


def _v2_out(m: Mobius, x: int) -> int:
    return m.a * x // (m.b + m.c * x)


@pytest.mark.parametrize("seed", range(6))
def test_two_v2_hops_reach_the_brute_force_optimum_exactly(seed: int) -> None:
    """Every input of small two-pool cycles, tried: the bound ``T`` is never exceeded and is
    the top of ``⌊P⌋`` over every intermediate amount (so looking at ``⌊y*⌋`` and
    ``⌊y*⌋ + 1`` only is enough), and whenever the closed form answers (it reached ``T``), its
    answer is the integer optimum; it answers on most cycles."""
    rng = random.Random(100 + seed)
    proven = 0
    for _ in range(12):
        r = rng.randrange(2_000, 30_000)
        first = V2M.mobius(v2(1, WETH, TKN, r, r * rng.randrange(102, 140) // 100), True)
        last = V2M.mobius(v2(2, TKN, WETH, r * rng.randrange(60, 150) // 100, r), True)
        assert first is not None and last is not None
        best = max(_v2_out(last, _v2_out(first, x)) - x for x in range(1, 2 * r))
        top = profit_top(first.a, first.b, first.c, last.a, last.b, last.c)
        floor_p = [
            (last.a * y * (first.a - first.c * y) - first.b * y * (last.b + last.c * y))
            // ((last.b + last.c * y) * (first.a - first.c * y))
            for y in range(1, 2 * r)
            if first.a - first.c * y > 0
        ]
        if best <= 0:
            assert top is None or top[1] <= 0 or two_v2(first, last, None) is None
            continue
        assert top is not None and top[1] >= best  # T bounds every input
        assert top[1] == max(floor_p)  # and is the top of ⌊P⌋ over every integer y
        found = two_v2(first, last, None)
        if found is not None:  # reached T: the optimum, proven
            proven += 1
            x, (y, out) = found
            assert out - x == best == top[1]
            assert (y, out) == (_v2_out(first, x), _v2_out(last, _v2_out(first, x)))
    assert proven >= 4


def test_optimise_two_v2_hops_is_exact_on_many_small_cycles() -> None:
    rng = random.Random(7)
    for i in range(40):
        r = rng.randrange(1_000, 8_000)
        legs = [
            v2_leg(v2(200 + i, WETH, TKN, r, r * rng.randrange(103, 130) // 100), WETH),
            v2_leg(v2(300 + i, TKN, WETH, r * rng.randrange(80, 120) // 100, r), TKN),
        ]
        best, _ = brute_best(legs, 2 * r)
        sized = optimise(legs, gross)
        if best <= 0:
            assert sized is None
            continue
        assert sized is not None and sized.path.gross_profit == best
        assert evaluate(legs, sized.path.amount_in) == sized.path


def test_v2_trader_equals_quote_and_amount_in_for() -> None:
    rng = random.Random(6)
    for _ in range(200):
        pool = v2(600, WETH, TKN, rng.randrange(1, 10**24), rng.randrange(1, 10**24))
        for zero_for_one in (True, False):
            trade = V2M.trader(pool, zero_for_one)
            amount = rng.randrange(1, 10**23)
            quote = V2M.quote(pool, zero_for_one, amount)
            assert trade(amount) == (None if quote is None else (amount, quote.amount_out, 0))
            want = rng.randrange(1, 10**24)
            paid = V2M.amount_in_for(pool, zero_for_one, want)
            assert trade(-want) == (None if paid is None else (paid, want, 0))


def _v3_states() -> list[V3PoolState]:
    rng = random.Random(3)
    states = []
    for i in range(12):
        tick = rng.randrange(-300, 300)
        base = rng.randrange(2, 20) * 10**21
        positions = [(-12_000, 12_000, base)]
        for _ in range(rng.randrange(1, 8)):
            lo = (tick // 60 + rng.randrange(-6, 6)) * 60
            positions.append((lo, lo + 60 * rng.randrange(1, 4), base * rng.randrange(1, 6) // 4))
        states.append(v3(400 + i, WETH, TKN, tick, positions, fee=rng.choice([500, 3000])))
    # islands of liquidity with empty gaps between and beyond them, on a fine spacing (many
    # empty bitmap words to cross): the trader skips what has no liquidity, to the same result
    for i in range(6):
        tick = rng.randrange(-300, 300) // 10 * 10
        base = rng.randrange(1, 5) * 10**20
        islands = [(-2_000, 2_000, base)]
        for side in (-1, 1):
            far = side * rng.randrange(8_000, 60_000) // 10 * 10
            lo, hi = sorted((far, far + side * 10 * rng.randrange(50, 3_000)))
            islands.append((lo, hi, base * rng.randrange(1, 8)))
        states.append(v3(420 + i, WETH, TKN, tick, islands, fee=500, spacing=10))
    return states


def test_v3_trader_and_fast_quote_equal_the_pools_swap_loop() -> None:
    rng = random.Random(4)
    checked = crossing = 0
    for state in _v3_states():
        for zero_for_one in (True, False):
            trade = V3M.trader(state, zero_for_one)
            for _ in range(60):
                amount = int(10 ** rng.uniform(0, 24))
                outcome = simulate_swap(
                    sqrt_price_x96=state.sqrt_price_x96,
                    tick=state.tick,
                    liquidity=state.liquidity,
                    fee=state.fee,
                    tick_spacing=state.tick_spacing,
                    bitmap=state.bitmap,
                    liquidity_net=state.liquidity_net,
                    zero_for_one=zero_for_one,
                    amount_specified=amount,
                )
                used, out = (
                    (outcome.amount0, -outcome.amount1)
                    if zero_for_one
                    else (outcome.amount1, -outcome.amount0)
                )
                expected = (amount, out) if used == amount and out > 0 else None
                quote = V3M.quote(state, zero_for_one, amount)
                assert (None if quote is None else (amount, quote.amount_out)) == expected
                ticks = outcome.initialized_ticks_crossed
                assert trade(amount) == (None if expected is None else (*expected, ticks))
                if expected is not None:
                    assert quote is not None and quote.ticks_crossed == ticks
                    paid = V3M.amount_in_for(state, zero_for_one, out)
                    assert paid is not None and paid <= amount
                    bought = trade(-out)
                    assert bought is not None and bought[:2] == (paid, out)
                    back = simulate_swap(
                        sqrt_price_x96=state.sqrt_price_x96,
                        tick=state.tick,
                        liquidity=state.liquidity,
                        fee=state.fee,
                        tick_spacing=state.tick_spacing,
                        bitmap=state.bitmap,
                        liquidity_net=state.liquidity_net,
                        zero_for_one=zero_for_one,
                        amount_specified=-out,
                    )
                    assert bought[2] == back.initialized_ticks_crossed
                    crossing += ticks > 0
                    checked += 1
    assert checked > 500 and crossing > 50


def test_v3_bound_is_never_exceeded_within_its_reach() -> None:
    rng = random.Random(5)
    tried = 0
    for state in _v3_states():
        for zero_for_one in (True, False):
            bound = V3M.bound(state, zero_for_one)
            assert bound is not None and bound.reach is not None
            if bound.reach <= 1:  # priced on an initialised tick: nothing stays in range
                continue
            tried += 1
            m = bound.curve
            for _ in range(40):
                x = rng.randrange(1, bound.reach)
                quote = V3M.quote(state, zero_for_one, x)
                assert quote is not None and quote.ticks_crossed == 0
                assert quote.amount_out * (m.b + m.c * x) <= m.a * x
                assert m.a * x - quote.amount_out * (m.b + m.c * x) < 8 * (m.b + m.c * x)
            beyond = V3M.quote(state, zero_for_one, bound.reach * 2 + 10**6)
            assert beyond is None or beyond.ticks_crossed > 0
    assert tried >= 18


@pytest.mark.parametrize("seed", range(3))
def test_v2_v3_cycles_reach_their_bound_which_nothing_exceeds(seed: int) -> None:
    """In-range V2-V3 cycles: ``T`` (from the exact bound curves) holds for every input tried
    around the optimum and far from it; the sizing reaches it on most cycles, which proves
    its answer optimal there, and never ends below its own float candidate."""
    rng = random.Random(50 + seed)
    reached = bounded = 0
    for i, state in enumerate(_v3_states()):
        price = (state.sqrt_price_x96 / 2**96) ** 2  # TKN per WETH
        skew = 1 + rng.choice([-1, 1]) * rng.uniform(0.004, 0.02)
        r_weth = rng.randrange(50, 2_000) * 10**18
        pair = v2(500 + i, WETH, TKN, r_weth, int(r_weth * price * skew))
        if skew > 1:  # TKN is cheap on the pair: buy it there, sell it on the V3 pool
            legs = [v2_leg(pair, WETH), Leg(state, V3M, False)]
        else:
            legs = [Leg(state, V3M, True), v2_leg(pair, TKN)]
        sized = optimise(legs, gross)
        if sized is None:
            continue
        assert evaluate(legs, sized.path.amount_in) == sized.path
        target = refine_target(legs, sized)
        if target is None:
            continue
        bounded += 1
        x0 = sized.path.amount_in
        window = [x0 + d for d in range(-200, 201)] + [
            x0 + rng.randrange(-(10**12), 10**12) for _ in range(200)
        ]
        profits = [at.gross_profit for at in (evaluate(legs, x) for x in window) if at]
        assert max(profits) <= target
        assert sized.path.gross_profit <= target
        reached += sized.path.gross_profit == target
    assert bounded >= 8
    assert reached * 4 >= bounded * 3


def test_v2_v3_extreme_prices_never_raise() -> None:
    rng = random.Random(12)
    sized_count = 0
    for i in range(60):
        tick = rng.randrange(-200_000, 200_000) // 60 * 60
        pool3 = v3(700 + i, WETH, TKN, tick, [(-887_220, 887_220, 10 ** rng.randrange(10, 30))])
        price = (pool3.sqrt_price_x96 / 2**96) ** 2
        r_weth = 10 ** rng.randrange(15, 30)
        pair = v2(800 + i, WETH, TKN, r_weth, max(1, int(r_weth * price * rng.uniform(0.9, 1.1))))
        for legs in (
            [v2_leg(pair, WETH), Leg(pool3, V3M, False)],
            [Leg(pool3, V3M, True), v2_leg(pair, TKN)],
        ):
            sized = optimise(legs, gross)
            if sized is not None:
                sized_count += 1
                assert sized.path.gross_profit > 0
                assert evaluate(legs, sized.path.amount_in) == sized.path
    assert sized_count >= 20
