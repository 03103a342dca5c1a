"""Exactness against the real contracts: every quote equals Router02 / QuoterV2 to the wei.

Random cases are drawn by hypothesis in lists and sent to the node as one JSON-RPC batch per
example, so thousands of on-chain quotes stay cheap.  Multi-tick liquidity comes from the
``market`` fixture (ten extra narrow positions per V3 pool).
"""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mevstack.devnet.rpc import encode_call
from mevstack.market.base import SwapResult
from mevstack.market.errors import MathRevert
from mevstack.market.pools import V2PoolState, V3PoolState
from mevstack.market.uniswap_v3.tick_math import MAX_TICK, MIN_TICK, get_sqrt_ratio_at_tick
from tests.market.conftest import Trader, fresh_states, raw_batch, run

QUOTE_PARAMS = "(address,address,uint256,uint24,uint160)"
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

amounts = st.builds(
    lambda mantissa, exponent: mantissa * 10**exponent // 1000 + 1,
    st.integers(1, 9999),
    st.integers(0, 30),
)
limits = st.one_of(
    st.none(),
    st.tuples(st.integers(-4000, 4000), st.integers(-3, 3), st.booleans()),
)


def _states(market: Trader) -> tuple[list[Any], list[Any]]:
    block = int(market.rpc.call("eth_blockNumber"), 16)
    states = run(fresh_states(market.node.rpc_url, market.infos(), block))
    v2 = [s for s in states.values() if isinstance(s, V2PoolState)]
    v3 = [s for s in states.values() if isinstance(s, V3PoolState)]
    return v2, v3


def _eth_call(to: str, data: bytes) -> tuple[str, list[Any]]:
    # Far above a block's gas: a swap that drains a spacing-1 pool walks ~3,500 bitmap words.
    call = {"to": to, "data": "0x" + data.hex(), "gas": hex(2_000_000_000)}
    return ("eth_call", [call, "latest"])


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.data())
def test_v2_quotes_equal_router02(market: Trader, data: st.DataObject) -> None:
    v2, _ = _states(market)
    routers = {d.name: d.router for d in market.dep.v2}
    cases = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(v2) - 1), st.booleans(), st.booleans(), amounts),
            min_size=120,
            max_size=120,
        )
    )
    calls = []
    for index, zfo, exact_in, amount in cases:
        pool = v2[index]
        path = [pool.token0, pool.token1] if zfo else [pool.token1, pool.token0]
        fn = "getAmountsOut" if exact_in else "getAmountsIn"
        calls.append(
            _eth_call(routers[pool.dex], encode_call(f"{fn}(uint256,address[])", amount, path))
        )
    answers = raw_batch(market.node.rpc_url, calls)
    compared = 0
    for (index, zfo, exact_in, amount), answer in zip(cases, answers, strict=True):
        pool = v2[index]
        try:
            ours: SwapResult | None = (
                pool.quote_exact_in(zfo, amount) if exact_in else pool.quote_exact_out(zfo, amount)
            )
        except MathRevert:
            ours = None
        if isinstance(answer, dict):
            assert ours is None, f"router reverted but we quoted {ours} for {pool.address}"
            continue
        (chain_amounts,) = decode(["uint256[]"], bytes.fromhex(answer[2:]))
        assert ours is not None, f"we refused a quote the router gave: {chain_amounts}"
        if exact_in:
            assert ours.amount_out == chain_amounts[1]
        else:
            assert ours.amount_in_used == chain_amounts[0]
        compared += 1
    assert compared > len(cases) // 3


def _limit(state: V3PoolState, choice: tuple[int, int, bool] | None) -> int | None:
    if choice is None:
        return None
    offset, nudge, on_boundary = choice
    tick = min(max(state.tick + offset, MIN_TICK), MAX_TICK)
    if on_boundary:
        tick = tick // state.tick_spacing * state.tick_spacing
        nudge = 0
    return get_sqrt_ratio_at_tick(tick) + nudge


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.data())
def test_v3_quotes_equal_quoter_v2(market: Trader, data: st.DataObject) -> None:
    _, v3 = _states(market)
    quoter = market.dep.v3.quoter_v2
    cases = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(v3) - 1), st.booleans(), st.booleans(), amounts, limits),
            min_size=100,
            max_size=100,
        )
    )
    calls = []
    for index, zfo, exact_in, amount, choice in cases:
        pool = v3[index]
        t_in, t_out = (pool.token0, pool.token1) if zfo else (pool.token1, pool.token0)
        limit = _limit(pool, choice)
        fn = "quoteExactInputSingle" if exact_in else "quoteExactOutputSingle"
        params = (t_in, t_out, amount, pool.fee, limit or 0)
        calls.append(_eth_call(quoter, encode_call(f"{fn}({QUOTE_PARAMS})", params)))
    answers = raw_batch(market.node.rpc_url, calls)
    compared = 0
    for (index, zfo, exact_in, amount, choice), answer in zip(cases, answers, strict=True):
        pool = v3[index]
        limit = _limit(pool, choice)
        try:
            if exact_in:
                ours: SwapResult | None = pool.quote_exact_in(zfo, amount, limit)
            else:
                ours = pool.quote_exact_out(zfo, amount, limit)
        except MathRevert:
            ours = None
        expect_revert = ours is None or (ours.amount_in_used <= 0 and ours.amount_out <= 0)
        if ours is not None and not exact_in and limit is None and ours.amount_out != amount:
            expect_revert = True  # QuoterV2 requires the full output when no limit is given
        context = f"pool {pool.address} zfo={zfo} exact_in={exact_in} amount={amount} {limit=}"
        if isinstance(answer, dict):
            assert expect_revert, f"quoter reverted ({answer}) but we quoted {ours}; {context}"
            continue
        assert not expect_revert, f"quoter answered {answer} but we refused; {context}"
        assert ours is not None
        quoted, sqrt_after, _ticks, _gas = decode(
            ["uint256", "uint160", "uint32", "uint256"], bytes.fromhex(answer[2:])
        )
        if exact_in:
            assert ours.amount_out == quoted, context
        else:
            assert ours.amount_in_used == quoted, context
        assert ours.sqrt_price_after == sqrt_after, context
        compared += 1
    assert compared > len(cases) // 4


def test_v3_ticks_are_crossed(market: Trader) -> None:
    """The fixture's liquidity really is multi-tick: large swaps cross many initialised ticks."""
    _, v3 = _states(market)
    crossed = [
        pool.quote_exact_in(zfo, 10**30).ticks_crossed for pool in v3 for zfo in (True, False)
    ]
    assert max(crossed) >= 10
    assert all(len(pool.liquidity_net) >= 12 for pool in v3)
