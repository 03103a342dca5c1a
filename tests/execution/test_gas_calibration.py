"""The strategy's gas estimate (``path_gas``) against what the real executor uses on anvil.

Each case builds a cycle's legs from market states loaded off the chain, picks an input that
crosses a chosen number of initialised ticks on the V3 hop (counted by the exact pool model),
executes that path on the deployed executor and holds ``path_gas`` within ±10% of the receipt's
``gasUsed``.  The chain is first brought to a steady state like a mainnet pool's: every V2 pair
has traded in an earlier block (non-zero price accumulators), the V3 pool has dense initialised
ticks that earlier swaps crossed both ways (non-zero fee-growth-outside values), and the
executor already holds some of the start token, so no write is a first-ever zero-to-non-zero
one that production would not pay.  Each path runs in its own transaction, so every pool slot
is cold, as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import pytest

from mevstack.devnet import catalog
from mevstack.devnet.deploy import PoolInfo as DevnetPool
from mevstack.devnet.rpc import encode_call
from mevstack.execution.encode import ExecuteArgs, Hop
from mevstack.market.base import PoolInfo
from mevstack.market.pools import KINDS, V3PoolState
from mevstack.market.state import load_pools
from mevstack.strategy.pools import DEFAULT_MODELS
from mevstack.strategy.sizing import Leg, PathEval, evaluate, optimise
from mevstack.strategy.valuation import path_gas
from tests.execution.world import DEADLINE, World, simulate_and_execute

WEI = 10**18
MAX_UINT = 2**256 - 1
V3_FEE = 3000
MINT_SIG = (
    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
)
EXACT_IN = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
# How far the trigger pushes the V3 pool (in ticks), and the span of dense ticks above that.
TRIGGER_TICKS = 1600
DENSE_SPACINGS = 12
TOLERANCE = Fraction(1, 10)


def _market_info(p: DevnetPool) -> PoolInfo:
    fee = p.fee_bps if p.kind == "uniswap_v2" else p.fee
    return PoolInfo(p.dex, p.kind, p.address, p.token0, p.token1, fee, p.tick_spacing, 0)


async def _legs(w: World, hops: list[Hop]) -> list[Leg]:
    block = int(w.sync.call("eth_blockNumber"), 16)
    infos = [_market_info(next(p for p in w.d.pools if p.address == h.pool)) for h in hops]
    loaded = await load_pools(w.rpc, KINDS, infos, block)
    states = {info.address: state for info, state in loaded}
    return [Leg(states[h.pool], DEFAULT_MODELS[h.kind], h.zero_for_one) for h in hops]


def _v3_pool(w: World) -> DevnetPool:
    return w.d.pool("uniswap-v3", "WETH", "USDC", V3_FEE)


def _v2_swap_eth(w: World, dex: str, eth: int, symbol: str) -> None:
    router = next(v.router for v in w.d.v2 if v.name == dex)
    path = [w.d.weth, w.token(symbol)]
    w.send_from_deployer(
        router,
        encode_call(
            "swapExactETHForTokens(uint256,address[],address,uint256)",
            0,
            path,
            w.d.deployer,
            DEADLINE,
        ),
        value=eth,
    )


def _v2_swap_tokens(w: World, dex: str, amount: int, symbol_in: str, symbol_out: str) -> None:
    router = next(v.router for v in w.d.v2 if v.name == dex)
    path = [w.token(symbol_in), w.token(symbol_out)]
    w.send_from_deployer(
        router,
        encode_call(
            "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
            amount,
            0,
            path,
            w.d.deployer,
            DEADLINE,
        ),
    )


def _v3_swap(w: World, symbol_in: str, symbol_out: str, amount: int, fee: int = V3_FEE) -> None:
    value = amount if symbol_in == "WETH" else 0
    params = (
        w.token(symbol_in),
        w.token(symbol_out),
        fee,
        w.d.deployer,
        DEADLINE,
        amount,
        0,
        0,
    )
    w.send_from_deployer(w.d.v3.swap_router, encode_call(EXACT_IN, params), value=value)


def _next_second(w: World, seconds: int = 12) -> None:
    w.sync.call("evm_increaseTime", [seconds])


async def _v3_state(w: World) -> V3PoolState:
    (leg,) = await _legs(w, [w.v3_hop(V3_FEE, "WETH", "USDC")])
    state = leg.state
    assert isinstance(state, V3PoolState)
    return state


def _eth_for_ticks(state: V3PoolState, weth_is_0: bool, ticks: int) -> int:
    """The least ETH (to 1%) whose sale moves the pool's tick by at least ``ticks``."""

    def moved(eth: int) -> int:
        after = state.quote_exact_in(weth_is_0, eth).tick_after
        assert after is not None
        return abs(after - state.tick)

    lo, hi = 0, WEI
    while moved(hi) < ticks:
        lo, hi = hi, hi * 2
    while hi - lo > hi // 100:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if moved(mid) < ticks else (lo, mid)
    return hi


@pytest.fixture(scope="module")
async def steady_chain(world_module: World) -> None:
    """Module-wide (inside the module snapshot): the steady state the docstring describes."""
    w = world_module
    usdc = w.token("USDC")
    for symbol in ("USDC", "DAI"):
        approve = encode_call("approve(address,uint256)", w.d.v3.swap_router, MAX_UINT)
        w.send_from_deployer(w.token(symbol), approve)
    _next_second(w)
    for dex in ("uniswap-v2", "sushi-v2"):
        for symbol in ("USDC", "DAI"):
            _v2_swap_eth(w, dex, WEI // 100, symbol)
        _v2_swap_tokens(w, dex, 10 * 10**6, "USDC", "DAI")
    # The stable pool the three-hop case crosses: fees earned in both tokens.
    _v3_swap(w, "USDC", "DAI", 100 * 10**6, fee=500)
    _v3_swap(w, "DAI", "USDC", 100 * 10**18, fee=500)

    # Dense ticks (one tiny position per spacing) over the range the trigger will reach.
    pool = _v3_pool(w)
    spacing = pool.tick_spacing or 1
    weth_is_0 = pool.token0 == w.d.weth
    state = await _v3_state(w)
    down = -1 if weth_is_0 else 1  # selling WETH moves the tick this way
    target = state.tick + down * TRIGGER_TICKS
    start = (target // spacing) * spacing
    lows = [start + k * spacing * -down for k in range(-3, DENSE_SPACINGS)]
    sym0, sym1 = ("WETH", "USDC") if weth_is_0 else ("USDC", "WETH")
    for low in sorted(lows):
        params = (
            pool.token0,
            pool.token1,
            pool.fee,
            low,
            low + spacing,
            catalog.token_amount(sym0, Fraction(50)),
            catalog.token_amount(sym1, Fraction(50)),
            0,
            0,
            w.d.deployer,
            DEADLINE,
        )
        receipt = w.send_from_deployer(w.d.v3.position_manager, encode_call(MINT_SIG, params))
        assert receipt["status"] == "0x1"

    # A round trip through them (fees in both tokens accrue on both sides of every tick), then
    # the trigger: a user's sale of WETH pushing the pool down to ``target``.
    eth = _eth_for_ticks(state, weth_is_0, TRIGGER_TICKS + 8 * spacing)
    before = w.balance(usdc, w.d.deployer)
    _next_second(w)
    _v3_swap(w, "WETH", "USDC", eth)
    got = w.balance(usdc, w.d.deployer) - before
    _next_second(w)
    _v3_swap(w, "USDC", "WETH", got)
    _next_second(w)
    state = await _v3_state(w)
    _v3_swap(w, "WETH", "USDC", _eth_for_ticks(state, weth_is_0, TRIGGER_TICKS))
    # Earlier profits: the executor holds some of every start token.
    w.fund_executor("WETH", WEI)
    w.fund_executor("USDC", 1_000 * 10**6)
    _next_second(w)


@dataclass(frozen=True)
class Case:
    name: str
    start: str
    path: Callable[[World], list[Hop]]
    flash: bool
    ticks: int | None = None  # initialised ticks the V3 hop crosses
    trigger: Callable[[World], object] | None = None


def _v2v2(w: World) -> list[Hop]:
    return [w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH")]


def _v2v2v2(w: World) -> list[Hop]:
    return [
        w.v2_hop("sushi-v2", "WETH", "USDC"),
        w.v2_hop("sushi-v2", "USDC", "DAI"),
        w.v2_hop("uniswap-v2", "DAI", "WETH"),
    ]


def _v2v3v2(w: World) -> list[Hop]:
    return [
        w.v2_hop("sushi-v2", "WETH", "USDC"),
        w.v3_hop(500, "USDC", "DAI"),
        w.v2_hop("uniswap-v2", "DAI", "WETH"),
    ]


def _v2v3(w: World) -> list[Hop]:
    return [w.v2_hop("sushi-v2", "WETH", "USDC"), w.v3_hop(V3_FEE, "USDC", "WETH")]


def _v3v2(w: World) -> list[Hop]:
    return [w.v3_hop(V3_FEE, "USDC", "WETH"), w.v2_hop("sushi-v2", "WETH", "USDC")]


def _cases() -> Iterator[Case]:
    for flash in (True, False):
        mode = "flash" if flash else "funded"
        yield Case(
            f"v2-v2 {mode}",
            "WETH",
            _v2v2,
            flash,
            trigger=lambda w: _v2_swap_eth(w, "uniswap-v2", 50 * WEI, "USDC"),
        )
        yield Case(
            f"v2-v2-v2 {mode}",
            "WETH",
            _v2v2v2,
            flash,
            trigger=lambda w: _v2_swap_eth(w, "uniswap-v2", 40 * WEI, "DAI"),
        )
        yield Case(
            f"v2-v3-v2 {mode}",
            "WETH",
            _v2v3v2,
            flash,
            trigger=lambda w: _v2_swap_eth(w, "uniswap-v2", 40 * WEI, "DAI"),
        )
        for ticks in (0, 1, 2, 4):
            yield Case(f"v2-v3 {mode}, {ticks} ticks", "WETH", _v2v3, flash, ticks)
    for ticks in (0, 1, 2, 4):
        yield Case(f"v3-v2 funded, {ticks} ticks", "USDC", _v3v2, False, ticks)


CASES = list(_cases())


def _amount_crossing(legs: list[Leg], v3_index: int, ticks: int, unit: int) -> PathEval:
    """An input whose V3 hop crosses exactly ``ticks`` initialised ticks (mid-interval)."""

    def crossed(x: int) -> int:
        at = evaluate(legs, x)
        assert at is not None
        return at.ticks_crossed[v3_index]

    def least_reaching(k: int) -> int:
        lo, hi = 0, unit // 1000  # start above dust that yields nothing on a hop
        while crossed(hi) < k:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if crossed(mid) < k else (lo, mid)
        return hi

    low = least_reaching(ticks) if ticks else 0
    high = least_reaching(ticks + 1)
    at = evaluate(legs, (low + high) // 2)
    assert at is not None and at.ticks_crossed[v3_index] == ticks
    return at


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_path_gas_matches_receipt(steady_chain: None, world: World, case: Case) -> None:
    w = world
    if case.trigger is not None:
        case.trigger(w)
        _next_second(w)
    hops = case.path(w)
    legs = await _legs(w, hops)
    if case.ticks is None:
        sized = optimise(legs, lambda at: at.gross_profit)
        assert sized is not None
        at = sized.path
    else:
        v3_index = next(i for i, h in enumerate(hops) if h.kind == "uniswap_v3")
        unit = 10 ** w.d.token(case.start).decimals
        at = _amount_crossing(legs, v3_index, case.ticks, unit)
    assert at.gross_profit > 0, "the case has no profitable input"
    if not case.flash:
        w.fund_executor(case.start, at.amount_in)
    args = ExecuteArgs(w.token(case.start), at.amount_in, tuple(hops), flash=case.flash)

    outcome = await simulate_and_execute(w, args)

    assert outcome.receipt.status == 1, outcome.simulated.revert_reason
    assert outcome.real_change == at.gross_profit  # the legs priced exactly what ran
    estimate = path_gas(legs, at.ticks_crossed)
    measured = outcome.receipt.gas_used
    error = Fraction(estimate - measured, measured)
    print(f"GASROW|{case.name}|{measured}|{estimate}|{float(error) * 100:+.1f}%")
    assert abs(error) <= TOLERANCE, (case.name, measured, estimate)
