"""Arbitrage sizing and scanning: mevstack against a per-cycle bounded numeric search.

Baseline (what degenbot 0.5's ``UniswapLpCycle`` does): for each cycle, SciPy's
``minimize_scalar(method="bounded", bounds=(1, max_input), options={"xatol": 1.0})`` on the
negated exact integer profit, the amount floored (``int(x)``) as degenbot does, evaluated
through the pool objects (here the market's ``PoolState.quote_exact_in``, as degenbot goes
through its pool classes); ``max_input`` is half the first pool's depth in the input token.
Both sides use the same exact integer pool math on the same cycles; the final amounts of both
are re-evaluated with the same evaluator, and the bench checks that our profit is equal or
better on every cycle.  Objective: gross profit (gas price 0), so both maximise the same thing.

Per family (two-pool V2, three-pool V2, V2-V3, V2-V3 whose optimum crosses ticks): the ratio of
mean times, of medians and of p90s, our p90 over our median, a cold pass over fresh cycles,
how many all-V2 answers carry their certificate, and the profit comparison.

Scan: a fixed, seeded topology of 10,000 V2 pools over 2,000 tokens with two base tokens (WETH,
USDC), prices consistent within ±0.1 % except for planted mispricings; full scan (screen +
exact sizing + valuation of survivors) and an incremental scan after a block touching 50 pools.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from eth_utils.address import to_checksum_address
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

from bench.result import Result
from mevstack.market.errors import MarketError
from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.pools.uniswap_v3 import V3PoolState
from mevstack.market.uniswap_v3.tick_bitmap import flip_tick
from mevstack.market.uniswap_v3.tick_math import get_sqrt_ratio_at_tick
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.pools import DEFAULT_MODELS
from mevstack.strategy.sizing import Leg, PathEval, evaluate, optimise
from mevstack.strategy.valuation import GasInputs

E18 = 10**18
V2M = DEFAULT_MODELS["uniswap_v2"]
V3M = DEFAULT_MODELS["uniswap_v3"]


def _addr(n: int) -> str:
    return str(to_checksum_address(f"0x{n:040x}"))


def _v2(n: int, t_a: str, t_b: str, r_a: int, r_b: int, dex: str = "uniswap-v2") -> V2PoolState:
    if t_a.lower() < t_b.lower():
        return V2PoolState(_addr(n), dex, t_a, t_b, 30, r_a, r_b, 1)
    return V2PoolState(_addr(n), dex, t_b, t_a, 30, r_b, r_a, 1)


def _leg(pool: Any, token_in: str) -> Leg:
    model = V2M if pool.kind == "uniswap_v2" else V3M
    return Leg(pool, model, token_in == pool.token0)


# --- cycles for the sizing comparison ----------------------------------------------------------


def _v2_cycles(rng: random.Random, hops: int, count: int) -> list[list[Leg]]:
    weth = _addr(0xE0)
    cycles = []
    for i in range(count):
        tokens = [weth, *(_addr(0x100 + 10 * i + k) for k in range(hops - 1)), weth]
        legs = []
        for k in range(hops):
            depth = rng.randrange(10, 10_000) * E18
            # token k+1 priced 1:1 with token k, the first hop cheaper by 0.8 .. 6 %
            skew = 1.0 + (rng.uniform(0.008, 0.06) if k == 0 else rng.uniform(-0.001, 0.001))
            pool = _v2(1000 * i + k, tokens[k], tokens[k + 1], depth, int(depth * skew))
            legs.append(_leg(pool, tokens[k]))
        cycles.append(legs)
    return cycles


def _v3_pool(n: int, token0: str, token1: str, rng: random.Random) -> V3PoolState:
    spacing = 60
    tick = rng.randrange(-600, 600)
    base = rng.randrange(2, 20) * 10**21
    positions = [(-60 * 200, 60 * 200, base)]
    for _ in range(rng.randrange(3, 12)):  # narrow positions around the price: ticks to cross
        lo = (tick // spacing + rng.randrange(-12, 12)) * spacing
        positions.append((lo, lo + spacing * rng.randrange(1, 6), base * rng.randrange(1, 8) // 4))
    bitmap: dict[int, int] = {}
    net: dict[int, int] = {}
    gross: dict[int, int] = {}
    for lower, upper, amount in positions:
        for t, delta in ((lower, amount), (upper, -amount)):
            if t not in net:
                flip_tick(bitmap, t, spacing)
                net[t] = gross[t] = 0
            net[t] += delta
            gross[t] += amount
    active = sum(a for lo, hi, a in positions if lo <= tick < hi)
    sqrt_p = get_sqrt_ratio_at_tick(tick) + 1
    return V3PoolState(
        _addr(n), "uniswap-v3", token0, token1, 3000, spacing, sqrt_p, tick, active, net, gross,
        bitmap, 1,
    )  # fmt: skip


def _v2_v3_cycles(rng: random.Random, count: int) -> list[list[Leg]]:
    weth = _addr(0xE0)
    cycles = []
    for i in range(count):
        token = _addr(0x1_0000 + i)
        t0, t1 = (weth, token) if weth.lower() < token.lower() else (token, weth)
        pool3 = _v3_pool(5_000_000 + i, t0, t1, rng)
        # V2 price = V3 price moved by 0.8 .. 4 % in a random direction
        price = (pool3.sqrt_price_x96 / 2**96) ** 2  # token1 per token0
        skew = 1.0 + rng.choice([-1, 1]) * rng.uniform(0.008, 0.04)
        r0 = rng.randrange(50, 5_000) * E18
        pool2 = V2PoolState(
            _addr(6_000_000 + i), "sushi-v2", t0, t1, 30, r0, int(r0 * price * skew), 1
        )
        # buy token where it is cheap
        first, second = (pool2, pool3) if (skew > 1) == (t0 == weth) else (pool3, pool2)
        legs = [_leg(first, weth), _leg(second, token)]
        cycles.append(legs)
    return cycles


# --- the baseline ------------------------------------------------------------------------------


def _pool_objects_profit(legs: list[Leg], amount_in: int) -> int | None:
    """Exact profit through the market's pool objects (``PoolState.quote_exact_in``), the way
    degenbot evaluates a cycle through its pool classes."""
    amount = amount_in
    try:
        for leg in legs:
            amount = leg.state.quote_exact_in(leg.zero_for_one, amount).amount_out
    except MarketError:
        return None
    return amount - amount_in


def _baseline(legs: list[Leg]) -> PathEval | None:
    def negative_profit(x: float) -> float:
        profit = _pool_objects_profit(legs, int(x)) if x >= 1 else None
        return -float(profit) if profit is not None else 0.0

    first = legs[0]
    reserve = (
        V2M.depth(first.state, _token_in(first))
        if first.state.kind == "uniswap_v2"
        else (V3M.depth(first.state, _token_in(first)))
    )
    bounds = (1.0, max(2.0, 0.5 * float(reserve)))
    found = minimize_scalar(
        negative_profit, method="bounded", bounds=bounds, options={"xatol": 1.0}
    )
    return evaluate(legs, int(found.x))


def _token_in(leg: Leg) -> str:
    return str(leg.state.token0 if leg.zero_for_one else leg.state.token1)


def _gross(at: PathEval) -> int:
    return at.gross_profit


def _per_cycle(
    fn: Callable[[list[Leg]], Any], cycles: list[list[Leg]]
) -> tuple[list[float], list[Any]]:
    """Seconds each cycle took, and the answers, sizing the whole set in a loop (as a scanner
    sizes its survivors)."""
    clock = time.perf_counter
    times, answers = [], []
    for legs in cycles:
        t0 = clock()
        answer = fn(legs)
        times.append(clock() - t0)
        answers.append(answer)
    return times, answers


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sized(legs: list[Leg]) -> Any:
    return optimise(legs, _gross)


def _family_result(
    name: str, cycles: list[list[Leg]], cold: list[list[Leg]], target: float
) -> Result:
    """Ours against the baseline on one family: a cold pass (fresh cycles, first call of
    each), then five warm rounds alternating the two (a load spike on this shared machine hits
    one round of each); the median round's medians and p90s are reported."""
    cold_ours, _ = _per_cycle(_sized, cold)
    cold_base, _ = _per_cycle(_baseline, cold)
    rounds = []
    for _ in range(5):
        ours_t, ours_a = _per_cycle(_sized, cycles)
        base_t, base_a = _per_cycle(_baseline, cycles)
        rounds.append((ours_t, base_t, ours_a, base_a))
    rounds.sort(key=lambda r: sum(r[1]) / sum(r[0]))
    ours_t, base_t, ours_a, base_a = rounds[len(rounds) // 2]
    ours_p = [0 if a is None else a.path.gross_profit for a in ours_a]
    base_p = [0 if a is None else a.gross_profit for a in base_a]
    shortfalls = [(b - o, b) for o, b in zip(ours_p, base_p, strict=True) if o < b]
    worse = len(shortfalls)
    better = sum(1 for o, b in zip(ours_p, base_p, strict=True) if o > b)
    gain = sum(o - b for o, b in zip(ours_p, base_p, strict=True) if o > b)
    short = f" (by at most {max(d for d, _ in shortfalls)} wei)" if shortfalls else ""
    sized = [a for a in ours_a if a is not None]
    proven = sum(1 for a in sized if a.proven)
    ticks = sum(1 for a in sized if a.path.total_ticks > 0)
    med_o, med_b = _quantile(ours_t, 0.5), _quantile(base_t, 0.5)
    p90_o, p90_b = _quantile(ours_t, 0.9), _quantile(base_t, 0.9)
    mean_speedup = sum(base_t) / sum(ours_t)
    cold_speedup = sum(cold_base) / sum(cold_ours)
    tail = p90_o / med_o
    met = mean_speedup >= target and worse == 0 and tail <= 3.0
    return Result(
        name=f"strategy: size one {name} cycle",
        value=sum(ours_t) / len(ours_t) * 1e6,
        unit="us",
        baseline=sum(base_t) / len(base_t) * 1e6,
        target=f"speed-up >= {target:g}x, p90 <= 3x median, profit >= baseline on every cycle",
        met=met,
        note=(
            f"{len(cycles)} cycles: speed-up {mean_speedup:.1f}x (mean), median "
            f"{med_o * 1e6:.1f} vs {med_b * 1e6:.0f} us ({med_b / med_o:.1f}x), p90 "
            f"{p90_o * 1e6:.1f} vs {p90_b * 1e6:.0f} us ({p90_b / p90_o:.1f}x), our p90/median "
            f"{tail:.2f}; cold pass ({len(cold)} fresh cycles) {cold_speedup:.1f}x; proven "
            f"{proven}/{len(sized)}, crossing ticks {ticks}; profit better on {better} "
            f"(+{gain} wei in all), equal on {len(cycles) - better - worse}, worse on "
            f"{worse}{short}"
        ),
    )


def _crossing(cycles: list[list[Leg]]) -> list[list[Leg]]:
    """The cycles whose optimum crosses at least one tick."""
    out = []
    for legs in cycles:
        sized = optimise(legs, _gross)
        if sized is not None and sized.path.total_ticks > 0:
            out.append(legs)
    return out


def _sizing_results() -> list[Result]:
    rng = random.Random(5)
    v2_v3 = _v2_v3_cycles(rng, 400)
    sets = {
        "2-pool V2": (_v2_cycles(rng, 2, 300), _v2_cycles(rng, 2, 100), 50.0),
        "3-pool V2": (_v2_cycles(rng, 3, 300), _v2_cycles(rng, 3, 100), 30.0),
        "V2-V3": (v2_v3[:100], _v2_v3_cycles(rng, 100), 10.0),
        "V2-V3 crossing ticks": (
            _crossing(v2_v3[100:])[:100],
            _crossing(_v2_v3_cycles(rng, 200))[:60],
            10.0,
        ),
    }
    results = []
    for name, (cycles, cold, target) in sets.items():
        _per_cycle(_sized, cycles[:10])  # imports and first-call costs, off the warm figures
        result = _family_result(name, cycles, cold, target)
        results.append(result)
        # the promise, not a figure: on the same cycles the baseline never ends above us
        assert "worse on 0" in result.note, f"{name}: baseline beat mevstack: {result.note}"
    return results


# --- the scan topology -------------------------------------------------------------------------


def _topology(seed: int = 11) -> tuple[ChainTerms, dict[str, V2PoolState]]:
    rng = random.Random(seed)
    weth, usdc = _addr(0xE0), _addr(0xA0)
    n_tokens = 2_000
    tokens = [_addr(0x10_0000 + i) for i in range(n_tokens - 2)]
    price = {weth: 1.0, usdc: 1 / 2000}  # in WETH per token unit (both 18 decimals here)
    for t in tokens:
        price[t] = 10 ** rng.uniform(-6, 1)
    pools: list[V2PoolState] = []

    def add(a: str, b: str, dex: str = "uniswap-v2", skew: float = 0.0) -> None:
        depth_weth = 10 ** rng.uniform(0, 4)  # pool value 1 .. 10,000 WETH per side
        noise = 1 + rng.uniform(-0.001, 0.001) + skew
        r_a = int(depth_weth / price[a] * E18)
        r_b = int(depth_weth / price[b] * E18 * noise)
        pools.append(_v2(0x100_0000 + len(pools), a, b, r_a, r_b, dex))

    add(weth, usdc)
    add(weth, usdc, "sushi-v2")
    for t in tokens:
        add(weth, t)
    for t in tokens[: n_tokens // 2]:
        add(usdc, t)
    for t in tokens[:1_000]:
        add(weth, t, "sushi-v2")
    while len(pools) < 10_000:
        a, b = rng.sample(tokens, 2)
        add(a, b, rng.choice(["uniswap-v2", "sushi-v2"]))
    for i in rng.sample(range(len(pools)), 25):  # planted mispricings of 2 .. 5 %
        p = pools[i]
        pools[i] = _v2(
            int(p.address, 16),
            p.token0,
            p.token1,
            p.reserve0,
            int(p.reserve1 * rng.uniform(1.02, 1.05)),
            p.dex,
        )
    terms = ChainTerms("bench", 1, (weth, usdc), weth)
    return terms, {p.address: p for p in pools}


def _scan_results() -> list[Result]:
    terms, states = _topology()
    gas = GasInputs(gas_price_wei=10**9)
    t0 = time.perf_counter()
    scanner = ArbitrageScanner(terms)
    scanner.add_pools(states.values())
    scanner.index.leg_codes()
    build = time.perf_counter() - t0
    n_cycles = len(scanner.index)
    tracemalloc.start()
    probe = ArbitrageScanner(terms)
    probe.add_pools(states.values())
    probe.index.leg_codes()
    index_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del probe
    runs = []
    found: list[Any] = []
    for block in range(3):
        t0 = time.perf_counter()
        found = scanner.scan(states, block_number=100 + block, gas=gas, detected_at="t")
        runs.append(time.perf_counter() - t0)
    full = min(runs)
    full_stats = scanner.last_stats
    rng = random.Random(3)
    incr_runs = []
    incr_stats = []
    for block in range(5):
        changed = rng.sample(sorted(states), 50)
        for a in changed:
            p = states[a]
            states[a] = V2PoolState(
                p.address,
                p.dex,
                p.token0,
                p.token1,
                p.fee_bps,
                p.reserve0 + p.reserve0 // 1000,
                p.reserve1,
                200 + block,
            )
        t0 = time.perf_counter()
        scanner.scan(states, block_number=200 + block, gas=gas, detected_at="t", changed=changed)
        incr_runs.append(time.perf_counter() - t0)
        incr_stats.append(scanner.last_stats.screened)
    incr = sorted(incr_runs)[len(incr_runs) // 2]
    return [
        Result(
            name="strategy: full scan 10k V2 pools / 2k tokens",
            value=full * 1e3,
            unit="ms",
            target="<= 500 ms",
            met=full <= 0.5,
            note=(
                f"{n_cycles} cycles (2- and 3-hop, bases WETH+USDC), index built in {build:.2f} s "
                f"holding {index_mb:.0f} MiB; "
                f"screened {full_stats.screened}, sized {full_stats.sized}, emitted {len(found)}"
            ),
        ),
        Result(
            name="strategy: incremental scan, 50 changed pools",
            value=incr * 1e3,
            unit="ms",
            target="<= 30 ms",
            met=incr <= 0.03,
            note=f"median of 5 blocks; cycles re-screened per block: {sorted(incr_stats)}",
        ),
    ]


def run() -> list[Result]:
    return _sizing_results() + _scan_results()


if __name__ == "__main__":
    print(Result.table(run()))
