"""Applying decoded triggers to hand-built pool states, the backrun search, and the BackrunBook."""

from __future__ import annotations

from typing import Any

import pytest

from mevstack.market.base import DexSpec
from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.pools.uniswap_v3 import V3PoolState
from mevstack.market.uniswap_v2 import get_amount_in, get_amount_out
from mevstack.market.uniswap_v3.tick_math import MIN_SQRT_RATIO
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.backrun import (
    BackrunBook,
    BackrunSearch,
    PoolDirectory,
    TriggerReverts,
    TriggerUnknown,
    Venues,
    Withdrawal,
    apply_trigger,
    learn_router,
)
from mevstack.strategy.mempool import PendingSwap, decode_calldata
from mevstack.strategy.pools import DEFAULT_MODELS
from mevstack.strategy.sizing import Leg, evaluate
from mevstack.strategy.valuation import GasInputs
from tests.strategy.pools import addr, v2, v3
from tests.strategy_backrun.abi import PAIR, POOL, ROUTER02, SWAP_ROUTER, calldata, v3_path

WETH, USDC, DAI, LINK = addr(0xE0), addr(0xA0), addr(0xB0), addr(0xC0)
UNI_ROUTER, SUSHI_ROUTER, V3_ROUTER = addr(0x1001), addr(0x1002), addr(0x1003)
ME = addr(0x777)
E18, E6 = 10**18, 10**6
NOW = 1_800_000_000
GAS = GasInputs(gas_price_wei=10**9)
DETECTED = "2026-11-25T07:00:00.000Z"
VENUES = Venues(
    WETH, {UNI_ROUTER: "uniswap-v2", SUSHI_ROUTER: "sushi-v2"}, {V3_ROUTER: "uniswap-v3"}
)
TERMS = ChainTerms("ethereum", 1, (WETH,), WETH)


def sorted_pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a.lower() < b.lower() else (b, a)


def market() -> dict[str, Any]:
    """WETH at 2000 USDC on both V2 DEXes (no arbitrage); two V3 pools at tick 0 off every cycle
    (LINK/DAI and DAI/USDC: no pool links them back to WETH)."""
    pools: list[Any] = [
        v2(1, WETH, USDC, 1000 * E18, 2_000_000 * E6, "uniswap-v2"),
        v2(2, WETH, USDC, 1000 * E18, 2_000_000 * E6, "sushi-v2"),
    ]
    for n, (a, b), fee, spacing in ((10, (LINK, DAI), 3000, 60), (11, (DAI, USDC), 500, 10)):
        t0, t1 = sorted_pair(a, b)
        positions = [(-6000, 6000, 10**22), (-10 * spacing, 10 * spacing, 10**23)]
        pools.append(v3(n, t0, t1, 0, positions, fee, spacing))
    return {p.address: p for p in pools}


def pending(to: str, data: bytes, value: int = 0, nonce: int = 0, tag: int = 1) -> PendingSwap:
    swaps = decode_calldata(to, data, value)
    assert swaps is not None
    return PendingSwap("0x" + f"{tag:064x}", ME, nonce, to, value, swaps)


def directory(states: dict[str, Any]) -> PoolDirectory:
    d = PoolDirectory()
    d.add(states.values())
    return d


def eth_for_usdc(eth: int, min_out: int = 0, deadline: int = NOW, router: str = UNI_ROUTER) -> Any:
    data = calldata(ROUTER02, "swapExactETHForTokens", min_out, [WETH, USDC], ME, deadline)
    return pending(router, data, eth)


def test_router02_exact_in_moves_the_pair_as_the_contract_does() -> None:
    states = market()
    pool = states[addr(1)]
    effect = apply_trigger(eth_for_usdc(50 * E18), states, directory(states), VENUES, timestamp=NOW)
    r_weth, r_usdc = (
        (pool.reserve0, pool.reserve1) if pool.token0 == WETH else (pool.reserve1, pool.reserve0)
    )
    out = get_amount_out(50 * E18, r_weth, r_usdc)
    after = effect.states[addr(1)]
    assert effect.changed == {addr(1)}
    assert effect.swaps[0].amount_in == 50 * E18 and effect.swaps[0].amount_out == out
    assert {after.reserve0, after.reserve1} == {r_weth + 50 * E18, r_usdc - out}
    assert states[addr(1)] is pool  # the input states are untouched
    # exactly the limit passes; one more wei of amountOutMin reverts, like the router
    apply_trigger(eth_for_usdc(50 * E18, out), states, directory(states), VENUES, timestamp=NOW)
    with pytest.raises(TriggerReverts, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        apply_trigger(
            eth_for_usdc(50 * E18, out + 1), states, directory(states), VENUES, timestamp=NOW
        )
    with pytest.raises(TriggerReverts, match="EXPIRED"):
        apply_trigger(
            eth_for_usdc(E18, 0, NOW - 1), states, directory(states), VENUES, timestamp=NOW
        )
    with pytest.raises(TriggerUnknown):
        apply_trigger(
            eth_for_usdc(E18, router=addr(0x999)), states, directory(states), VENUES, timestamp=NOW
        )
    to_token = calldata(ROUTER02, "swapExactETHForTokens", 0, [WETH, USDC], USDC, NOW)
    with pytest.raises(TriggerReverts, match="INVALID_TO"):
        apply_trigger(
            pending(UNI_ROUTER, to_token, E18), states, directory(states), VENUES, timestamp=NOW
        )
    bad_path = calldata(ROUTER02, "swapExactETHForTokens", 0, [USDC, WETH], ME, NOW)
    with pytest.raises(TriggerReverts, match="INVALID_PATH"):
        apply_trigger(
            pending(UNI_ROUTER, bad_path, E18), states, directory(states), VENUES, timestamp=NOW
        )


def test_router02_exact_out_and_multi_hop() -> None:
    states = market()
    pool = states[addr(2)]
    want = 10_000 * E6
    r_weth, r_usdc = (
        (pool.reserve0, pool.reserve1) if pool.token0 == WETH else (pool.reserve1, pool.reserve0)
    )
    need = get_amount_in(want, r_weth, r_usdc)
    exact_out = calldata(ROUTER02, "swapETHForExactTokens", want, [WETH, USDC], ME, NOW)
    effect = apply_trigger(
        pending(SUSHI_ROUTER, exact_out, need), states, directory(states), VENUES, timestamp=NOW
    )
    assert (effect.swaps[0].amount_in, effect.swaps[0].amount_out) == (need, want)
    with pytest.raises(TriggerReverts, match="EXCESSIVE_INPUT_AMOUNT"):
        apply_trigger(
            pending(SUSHI_ROUTER, exact_out, need - 1),
            states,
            directory(states),
            VENUES,
            timestamp=NOW,
        )
    # USDC -> WETH -> USDC through the same pair twice: the library quotes both hops on the
    # reserves read before the first swap; the fee-on-transfer variant quotes each hop on the
    # reserves it finds, which after the first hop give more USDC for the WETH.
    loop = calldata(ROUTER02, "swapExactTokensForTokens", 1000 * E6, 0, [USDC, WETH, USDC], ME, NOW)
    quoted = apply_trigger(
        pending(UNI_ROUTER, loop), states, directory(states), VENUES, timestamp=NOW
    )
    fot = calldata(
        ROUTER02,
        "swapExactTokensForTokensSupportingFeeOnTransferTokens",
        1000 * E6,
        0,
        [USDC, WETH, USDC],
        ME,
        NOW,
    )
    live = apply_trigger(pending(UNI_ROUTER, fot), states, directory(states), VENUES, timestamp=NOW)
    assert quoted.swaps[0] == live.swaps[0]
    p1 = states[addr(1)]
    assert quoted.swaps[1].amount_out == get_amount_out(
        quoted.swaps[0].amount_out, p1.reserve1, p1.reserve0
    )
    assert quoted.swaps[1].amount_out < live.swaps[1].amount_out < 1000 * E6


def v3_out(state: V3PoolState, token_in: str, amount_out: int) -> tuple[int, V3PoolState]:
    zero_for_one = token_in == state.token0
    o = state.swap(zero_for_one, -amount_out)
    paid = o.amount0 if zero_for_one else o.amount1
    return paid, V3PoolState(
        state.address, state.dex, state.token0, state.token1, state.fee, state.tick_spacing,
        o.sqrt_price_x96, o.tick, o.liquidity, state.liquidity_net, state.liquidity_gross,
        state.bitmap, state.block_number,
    )  # fmt: skip


def test_swap_router_exact_output_runs_last_pool_first() -> None:
    states = market()
    link_dai, dai_usdc = states[addr(10)], states[addr(11)]
    want = 500 * E18  # units do not matter here: both pools sit at tick 0
    need_dai, dai_usdc_after = v3_out(dai_usdc, DAI, want)
    need_link, link_dai_after = v3_out(link_dai, LINK, need_dai)
    path = v3_path(USDC, 500, DAI, 3000, LINK)  # exactOutput: output token first
    data = calldata(SWAP_ROUTER, "exactOutput", (path, ME, NOW, want, need_link))
    effect = apply_trigger(
        pending(V3_ROUTER, data), states, directory(states), VENUES, timestamp=NOW
    )
    assert [s.pool for s in effect.swaps] == [addr(11), addr(10)]
    assert [(s.amount_in, s.amount_out) for s in effect.swaps] == [
        (need_dai, want),
        (need_link, need_dai),
    ]
    assert effect.states[addr(11)] == dai_usdc_after and effect.states[addr(10)] == link_dai_after
    short = calldata(SWAP_ROUTER, "exactOutput", (path, ME, NOW, want, need_link - 1))
    with pytest.raises(TriggerReverts, match="Too much requested"):
        apply_trigger(pending(V3_ROUTER, short), states, directory(states), VENUES, timestamp=NOW)
    with pytest.raises(TriggerReverts, match="too old"):
        late = calldata(SWAP_ROUTER, "exactOutput", (path, ME, NOW - 1, want, need_link))
        apply_trigger(pending(V3_ROUTER, late), states, directory(states), VENUES, timestamp=NOW)
    # exact input through both, then a direct pool call: sequential on the running state
    forward = v3_path(LINK, 3000, DAI, 500, USDC)
    ein = calldata(SWAP_ROUTER, "exactInput", (forward, ME, NOW, need_link, 0))
    again = apply_trigger(pending(V3_ROUTER, ein), states, directory(states), VENUES, timestamp=NOW)
    assert again.swaps[0].amount_out == need_dai and again.swaps[1].amount_out >= want
    direct = calldata(POOL, "swap", ME, True, 10**20, MIN_SQRT_RATIO + 1, b"")
    moved = apply_trigger(
        pending(addr(10), direct), states, directory(states), VENUES, timestamp=NOW
    )
    assert moved.swaps[0].amount_in == 10**20 and moved.states[addr(10)].tick < link_dai.tick


def hop_amounts_on(states: dict[str, Any], opp: Any) -> list[int]:
    """Each hop's exact output re-evaluated on ``states`` with the strategy's own models."""
    legs = []
    for hop in opp.path:
        state = states[hop.pool]
        legs.append(Leg(state, DEFAULT_MODELS[state.kind], hop.token_in == state.token0))
    evaluated = evaluate(legs, opp.amount_in)
    assert evaluated is not None
    return list(evaluated.amounts_out)


def test_search_finds_the_backrun_on_the_post_trigger_state() -> None:
    states = market()
    plain = ArbitrageScanner(TERMS)
    plain.add_pools(states.values())
    assert plain.scan(states, block_number=7, gas=GAS, detected_at=DETECTED) == []
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(states.values())
    trigger = eth_for_usdc(80 * E18)
    result = search.search(
        trigger, states, block_number=7, timestamp=NOW, gas=GAS, detected_at=DETECTED
    )
    assert result.effect is not None and result.reason is None and result.opportunities
    best = result.opportunities[0]
    assert best.kind == "backrun" and best.trigger_tx == trigger.tx_hash and best.block_number == 7
    assert addr(1) in {h.pool for h in best.path}
    post = {**states, **result.effect.states}
    assert [h.amount_out for h in best.path] == hop_amounts_on(post, best)
    assert best.gross_profit == best.amount_out - best.amount_in > 0
    # the same search against a reverting trigger: nothing, and why
    failing = search.search(
        eth_for_usdc(80 * E18, 10**30),
        states,
        block_number=7,
        timestamp=NOW,
        gas=GAS,
        detected_at=DETECTED,
    )
    assert (
        failing.opportunities == [] and failing.reason and "INSUFFICIENT_OUTPUT" in failing.reason
    )


def test_search_state_does_not_leak_between_triggers() -> None:
    states = market()
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(states.values())
    # A makes WETH dear on uni; B (smaller) makes it dear on sushi.  Had A's post-trigger rates
    # stayed in the screen, B's cycle (sell WETH on sushi, buy it back on uni) would look dead.
    big = calldata(ROUTER02, "swapExactTokensForETH", 300_000 * E6, 0, [USDC, WETH], ME, NOW)
    a = pending(UNI_ROUTER, big, tag=1)
    sell = calldata(ROUTER02, "swapExactTokensForETH", 150_000 * E6, 0, [USDC, WETH], ME, NOW)
    b = pending(SUSHI_ROUTER, sell, tag=2)
    kw: dict[str, Any] = {"block_number": 7, "timestamp": NOW, "gas": GAS, "detected_at": DETECTED}
    search.search(a, states, **kw)
    after_a = search.search(b, states, **kw).opportunities
    fresh = BackrunSearch(TERMS, VENUES)
    fresh.add_pools(states.values())
    alone = fresh.search(b, states, **kw).opportunities
    assert after_a and [(o.id, o.amount_in, o.gross_profit) for o in after_a] == [
        (o.id, o.amount_in, o.gross_profit) for o in alone
    ]
    # A new head block makes WETH dearer on sushi than even after A on uni: the next search
    # must screen sushi at its new rate, or the cycle selling WETH there looks dead.
    search.search(a, states, **kw)
    moved = dict(states)
    moved[addr(2)] = v2(2, WETH, USDC, 1000 * E18, 3_000_000 * E6, "sushi-v2")
    search.on_block([addr(2)])
    again = search.search(a, moved, **kw).opportunities
    fresh2 = BackrunSearch(TERMS, VENUES)
    fresh2.add_pools(moved.values())
    assert again and [(o.id, o.amount_in) for o in again] == [
        (o.id, o.amount_in) for o in fresh2.search(a, moved, **kw).opportunities
    ]


def test_backrun_book_withdraws_replaced_dropped_mined_and_gone() -> None:
    book = BackrunBook()
    h1, h2, h3 = "0x" + "01" * 32, "0x" + "02" * 32, "0x" + "03" * 32
    assert book.track(ME, 5, h1, ["a", "b"]) == []
    assert h1 in book and book.opportunities(h1) == ("a", "b")
    # same trigger refreshed at a new block: "b" no longer pays
    assert book.track(ME, 5, h1, ["a"]) == [Withdrawal(h1, "gone", ("b",))]
    # same sender and nonce, new hash (a speed-up or cancel): the old backruns go
    assert book.track(ME.lower(), 5, h2.upper().replace("0X", "0x"), ["c"]) == [
        Withdrawal(h1, "replaced", ("a",))
    ]
    assert h1 not in book and len(book) == 1
    # the replacement's slot is mined under yet another hash: replaced again
    assert book.mined(ME, 5, h3) == [Withdrawal(h2, "replaced", ("c",))]
    assert len(book) == 0 and book.mined(ME, 5, h3) == []
    book.track(ME, 6, h1, ["d"])
    assert book.mined(ME, 6, h1) == [Withdrawal(h1, "mined", ("d",))]
    book.track(ME, 7, h2, ["e"])
    book.track(addr(0x55), 0, h3, ["f"])
    assert book.dropped(h2) == [Withdrawal(h2, "dropped", ("e",))] and book.dropped(h2) == []
    assert book.retain([h1]) == [Withdrawal(h3, "dropped", ("f",))] and len(book) == 0


def test_direct_pair_swap_needs_balances() -> None:
    states = market()
    pool: V2PoolState = states[addr(1)]
    assert (pool.token0, pool.token1) == (USDC, WETH)
    data = calldata(PAIR, "swap", 1000 * E6, 0, ME, b"")  # USDC out: WETH must have come in
    trigger = pending(addr(1), data)
    with pytest.raises(TriggerUnknown, match="balances"):
        apply_trigger(trigger, states, directory(states), VENUES, timestamp=NOW)
    sent = get_amount_in(1000 * E6, pool.reserve1, pool.reserve0)
    held = (pool.reserve0, pool.reserve1 + sent)
    effect = apply_trigger(
        trigger, states, directory(states), VENUES, timestamp=NOW, v2_balances={addr(1): held}
    )
    assert effect.swaps[0].amount_in == sent and effect.swaps[0].token_in == WETH
    assert effect.states[addr(1)].reserve0 == pool.reserve0 - 1000 * E6
    short = (pool.reserve0, pool.reserve1 + sent - 1)
    with pytest.raises(TriggerReverts, match="K"):
        apply_trigger(
            trigger, states, directory(states), VENUES, timestamp=NOW, v2_balances={addr(1): short}
        )
    flash = pending(addr(1), calldata(PAIR, "swap", 1000 * E6, 0, ME, b"\x01"))
    with pytest.raises(TriggerUnknown, match="flash"):
        apply_trigger(
            flash, states, directory(states), VENUES, timestamp=NOW, v2_balances={addr(1): held}
        )


def test_profit_is_never_valued_on_a_pool_the_trigger_touched() -> None:
    """A DAI-start backrun is valued on the deepest DAI/WETH pool off its path *and* untouched by
    the trigger: here the deepest one (V3, 0.05 %) is touched, so the small sushi pair is used."""
    uni = v2(1, DAI, WETH, 10**24, 10**24, "uniswap-v2")
    sushi = v2(2, DAI, WETH, 10**23, 10**23, "sushi-v2")
    wide = [(-6000, 6000, 10**24)]
    a = v3(10, DAI, WETH, 0, wide, 3000, 60)
    b = v3(11, DAI, WETH, 0, [(-6000, 6000, 10**26)], 500, 10)
    states: dict[str, Any] = {p.address: p for p in (uni, sushi, a, b)}
    first = (WETH, DAI, 3000, ME, NOW, 5 * 10**22, 0, 0)
    second = (WETH, DAI, 500, ME, NOW, E18, 0, 0)
    items = [calldata(SWAP_ROUTER, "exactInputSingle", p) for p in (first, second)]
    trigger = pending(V3_ROUTER, calldata(SWAP_ROUTER, "multicall", items))
    search = BackrunSearch(ChainTerms("ethereum", 1, (WETH, DAI), WETH), VENUES)
    search.add_pools(states.values())
    found = search.search(
        trigger, states, block_number=7, timestamp=NOW, gas=GAS, detected_at=DETECTED
    )
    assert found.effect is not None and found.effect.changed == {a.address, b.address}
    dai_start = [o for o in found.opportunities if o.token == DAI]
    through = next(o for o in dai_start if {h.pool for h in o.path} == {a.address, uni.address})
    on_sushi = get_amount_out(through.gross_profit, sushi.reserve0, sushi.reserve1)
    assert through.net_profit_wei == on_sushi - through.gas_cost_wei


def test_routers_are_learnt_from_their_factory() -> None:
    dexes = [
        DexSpec("uniswap-v2", "uniswap_v2", addr(0xF1)),
        DexSpec("uniswap-v3", "uniswap_v3", addr(0xF3)),
    ]
    venues = Venues(WETH)
    assert learn_router(venues, UNI_ROUTER, addr(0xF9), dexes) == venues
    v2_known = learn_router(venues, UNI_ROUTER, addr(0xF1).lower(), dexes)
    both = learn_router(v2_known, V3_ROUTER, addr(0xF3), dexes)
    assert (
        both.v2_dex(UNI_ROUTER.lower()) == "uniswap-v2" and both.v3_dex(V3_ROUTER) == "uniswap-v3"
    )
    assert both.v2_dex(V3_ROUTER) is None and venues.v2_dex(UNI_ROUTER) is None
