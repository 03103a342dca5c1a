"""The scanner end to end on hand-built states: found cycles, exact hop amounts, valuation,
thresholds, incremental rescans, and the Opportunity JSON shape and id."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from mevstack.config import ChainConfig
from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.uniswap_v2 import get_amount_out
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms, scan
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.valuation import GasInputs, InvalidGasQuote
from tests.strategy.pools import addr, v2

WETH, USDC, DAI, LINK = addr(0xE0), addr(0xA0), addr(0xB0), addr(0xC0)
E18, E6 = 10**18, 10**6
GAS = GasInputs(gas_price_wei=10 * 10**9)
NOW = "2026-11-25T06:00:00.000Z"


def terms(**kw: object) -> ChainTerms:
    base = ChainTerms("ethereum", 1, (WETH, USDC), WETH)
    return replace(base, **kw)  # type: ignore[arg-type]


def market() -> dict[str, V2PoolState]:
    """WETH at 2000 USDC everywhere except a cheap sushi WETH/USDC pool (1940)."""
    pools = [
        v2(1, WETH, USDC, 1000 * E18, 2_000_000 * E6, "uniswap-v2"),
        v2(2, WETH, USDC, 1000 * E18, 1_940_000 * E6, "sushi-v2"),
        v2(3, WETH, DAI, 500 * E18, 1_000_000 * E18, "uniswap-v2"),
        v2(4, DAI, USDC, 1_000_000 * E18, 1_000_000 * E6, "uniswap-v2"),
        v2(5, WETH, LINK, 100 * E18, 20_000 * E18, "uniswap-v2"),
    ]
    return {p.address: p for p in pools}


def scanner(states: dict[str, V2PoolState], **kw: object) -> ArbitrageScanner:
    s = ArbitrageScanner(terms(**kw))
    s.add_pools(states.values())
    return s


def run(s: ArbitrageScanner, states: dict[str, V2PoolState], **kw: object) -> list[Opportunity]:
    return s.scan(states, block_number=123, gas=GAS, detected_at=NOW, **kw)  # type: ignore[arg-type]


def test_planted_difference_is_found_with_exact_hop_amounts() -> None:
    states = market()
    found = run(scanner(states), states)
    assert found, "the 3 % WETH/USDC gap must be found"
    best = found[0]
    assert best.net_profit_wei > 0
    # every hop's output is exactly what the pair's library returns for its input
    amount = best.amount_in
    assert best.path[0].token_in == best.token == best.path[-1].token_out
    for hop in best.path:
        pool = states[hop.pool]
        assert hop.amount_in == amount
        r_in, r_out = (
            (pool.reserve0, pool.reserve1)
            if hop.token_in == pool.token0
            else (pool.reserve1, pool.reserve0)
        )
        assert hop.amount_out == get_amount_out(hop.amount_in, r_in, r_out, pool.fee_bps)
        amount = hop.amount_out
    assert best.amount_out == amount and best.gross_profit == amount - best.amount_in
    assert best.gas_cost_wei == best.gas_estimate * GAS.gas_price_wei


def usdc_to_weth(pool: V2PoolState, amount: int) -> int:
    if pool.token0 == USDC:
        return get_amount_out(amount, pool.reserve0, pool.reserve1, pool.fee_bps)
    return get_amount_out(amount, pool.reserve1, pool.reserve0, pool.fee_bps)


def test_usdc_start_is_valued_off_path_or_not_at_all() -> None:
    states = market()
    found = run(scanner(states), states)
    usdc = [o for o in found if o.token == USDC]
    # the 2-hop USDC cycle uses both WETH/USDC pools: nothing is left to value USDC, so it is
    # not emitted; the triangle through DAI is valued on the WETH/USDC pool it does not use
    assert [len(o.path) for o in usdc] == [3]
    tri = usdc[0]
    assert addr(1) not in {h.pool for h in tri.path}
    assert tri.net_profit_wei == usdc_to_weth(states[addr(1)], tri.gross_profit) - tri.gas_cost_wei
    # a third WETH/USDC pool gives the 2-hop cycle a valuation route: the only one off its path
    extra = v2(6, WETH, USDC, 10 * E18, 20_000 * E6, "uniswap-v2")
    states2 = {**states, extra.address: extra}
    two_hop = [o for o in run(scanner(states2), states2) if o.token == USDC and len(o.path) == 2]
    assert len(two_hop) == 1
    opp = two_hop[0]
    assert {h.pool for h in opp.path} == {addr(1), addr(2)}
    assert opp.net_profit_wei == usdc_to_weth(extra, opp.gross_profit) - opp.gas_cost_wei
    # the deepest off-path pool is chosen: pool 1 (1000 WETH) over pool 6 (10 WETH)
    tri2 = next(o for o in run(scanner(states2), states2) if o.token == USDC and len(o.path) == 3)
    assert (
        tri2.net_profit_wei == usdc_to_weth(states[addr(1)], tri2.gross_profit) - tri2.gas_cost_wei
    )


def test_balanced_market_yields_nothing_and_threshold_filters() -> None:
    states = market()
    balanced = {
        **states,
        addr(2): reprice(states[addr(2)], 2_000_000),
    }
    assert run(scanner(balanced), balanced) == []
    found = run(scanner(states), states)
    top = found[0].net_profit_wei
    assert run(scanner(states, min_net_profit_wei=top), states)[:1] != found[:1]
    assert all(o.net_profit_wei > top for o in run(scanner(states, min_net_profit_wei=top), states))
    # a prohibitive gas price removes everything
    costly = scanner(states).scan(states, block_number=123, gas=GasInputs(10**18), detected_at=NOW)
    assert costly == []


def reprice(pool: V2PoolState, usdc_per_1000_weth: int) -> V2PoolState:
    """The WETH/USDC pool holding 1000 WETH against this much USDC."""
    if pool.token0 == WETH:
        return replace(pool, reserve0=1000 * E18, reserve1=usdc_per_1000_weth * E6)
    return replace(pool, reserve0=usdc_per_1000_weth * E6, reserve1=1000 * E18)


def test_max_trade_caps_the_input() -> None:
    states = market()
    free = run(scanner(states), states)[0]
    cap = free.amount_in // 4
    capped = [o for o in run(scanner(states, max_trade_wei=cap), states) if o.token == WETH]
    assert capped and all(o.amount_in <= cap for o in capped)


def test_incremental_scan_touches_only_changed_cycles_and_keeps_ids() -> None:
    states = market()
    s = scanner(states)
    first = run(s, states)
    full_screened = s.last_stats.screened
    assert run(s, states, changed=[]) == []
    # LINK's pool is in no cycle: changing it re-screens nothing
    assert run(s, states, changed=[addr(5)]) == [] and s.last_stats.screened == 0
    # move the cheap pool a little: its cycles are re-evaluated, ids persist, amounts refresh
    moved = reprice(states[addr(2)], 1_950_000)
    states2 = {**states, addr(2): moved}
    again = run(s, states2, changed=[addr(2)])
    assert 0 < s.last_stats.screened < full_screened
    assert {o.id for o in again} <= {o.id for o in first}
    same = next(o for o in again if o.id == first[0].id)
    assert same.amount_in != first[0].amount_in
    # the incremental answer equals a full rescan of the new state
    assert [(o.id, o.amount_in) for o in again] == [
        (o.id, o.amount_in) for o in run(scanner(states2), states2)
    ]
    # new pools extend the index
    extra = v2(7, DAI, LINK, 10**24, 10**24)
    assert s.add_pools([extra]) > 0


def test_blocked_tokens_are_never_in_a_path() -> None:
    states = market()
    found = run(scanner(states), states, blocked_tokens=frozenset({DAI}))
    assert found and all(DAI not in (h.token_in, h.token_out) for o in found for h in o.path)


def test_opportunity_json_shape_and_stable_id() -> None:
    states = market()
    opp = run(scanner(states), states)[0]
    data = opp.to_json()
    assert list(data) == [
        "id", "chain", "chain_id", "kind", "block_number", "token", "amount_in", "amount_out",
        "gross_profit", "gas_estimate", "gas_price_wei", "gas_cost_wei", "net_profit_wei",
        "path", "trigger_tx", "status", "detected_at", "expires_at_block",
        "token_symbol", "token_decimals",  # added fields: display metadata of `token`
        "ahead_txs",  # added: pending txs a backrun is priced after (before its trigger)
        "between_txs",  # added: ...and after its trigger, in front of the backrun
    ]  # fmt: skip
    assert data["kind"] == "arbitrage" and data["status"] == "detected"
    assert data["trigger_tx"] is None and data["expires_at_block"] == 125
    assert data["detected_at"] == NOW and isinstance(data["gas_estimate"], int)
    for key in ("amount_in", "amount_out", "gross_profit", "gas_price_wei", "gas_cost_wei"):
        assert re.fullmatch(r"[0-9]+", data[key])
    assert int(data["gross_profit"]) == int(data["amount_out"]) - int(data["amount_in"])
    hop_keys = ["dex", "pool", "token_in", "token_out", "amount_in", "amount_out", "dex_kind"]
    assert all(list(h) == hop_keys for h in data["path"])
    assert {h["dex_kind"] for h in data["path"]} == {"uniswap_v2"}
    assert data["path"][0]["pool"] in (addr(1), addr(2))  # checksummed
    # same path at a later block with other amounts: same id; other direction/trigger: other id
    later = scan(states, None, GasInputs(GAS.gas_price_wei * 2), terms(), block_number=124,
                 detected_at=NOW)  # fmt: skip
    assert any(o.id == opp.id and o.block_number == 124 for o in later)
    trig = run(scanner(states), states, kind="backrun", trigger_tx="0x" + "ab" * 32)
    assert trig[0].trigger_tx and trig[0].id != opp.id and trig[0].kind == "backrun"
    assert len({o.id for o in run(scanner(states), states)}) == len(run(scanner(states), states))


def test_addresses_match_whatever_their_case() -> None:
    """The market keys pools by lower-case address; the config checksums tokens."""
    states = market()
    expected = [(o.id, o.amount_in, o.net_profit_wei) for o in run(scanner(states), states)]
    lower = {a.lower(): p for a, p in states.items()}
    s = ArbitrageScanner(replace(terms(), base_tokens=(WETH.lower(), USDC), wrapped_native=WETH))
    s.add_pools(lower.values())
    got = s.scan(lower, block_number=123, gas=GAS, detected_at=NOW)
    assert [(o.id, o.amount_in, o.net_profit_wei) for o in got] == expected
    again = s.scan(lower, block_number=124, gas=GAS, detected_at=NOW, changed=[addr(2).lower()])
    assert {o.id for o in again} == {o.id for o in got if addr(2) in {h.pool for h in o.path}}
    assert all(o.to_json()["token"] in (WETH, USDC) for o in got)


def test_gas_inputs_from_a_gas_quote() -> None:
    quote = {
        "chain": "base", "block_number": 7, "base_fee_wei": "90", "next_base_fee_wei": "100",
        "priority_fee_wei": {"p10": "1", "p50": "5", "p90": "9"}, "l1_fee_model": "op_stack",
        "l1_data_fee_wei_per_kb": "2000", "updated_at": NOW,
    }  # fmt: skip
    # the quote's L1 fee is for 1,024 bytes: 2000 × 400 / 1024 = 781.25, rounded up
    assert GasInputs.from_gas_quote(quote) == GasInputs(105, 782)
    assert GasInputs.from_gas_quote({**quote, "l1_data_fee_wei_per_kb": None}).l1_data_fee_wei == 0
    with pytest.raises(InvalidGasQuote, match="not a GasQuote"):
        GasInputs.from_gas_quote({"chain": "x"})


def test_one_shot_scan_from_config_and_gas_quote() -> None:
    chain = ChainConfig.model_validate(
        {
            "name": "ethereum", "chain_id": 1, "rpc": ["http://127.0.0.1:8545"],
            "wrapped_native": WETH.lower(), "base_tokens": [WETH, USDC],
            "min_net_profit_wei": str(10**16), "max_hops": 3,
        }
    )  # fmt: skip
    quote = {"next_base_fee_wei": "9000000000", "priority_fee_wei": {"p50": "1000000000"}}
    states = market()
    found = scan(states, None, quote, chain, block_number=123, detected_at=NOW)
    expected = [
        o for o in run(scanner(states), states) if o.net_profit_wei > 10**16
    ]  # same gas price: 10 gwei
    assert [(o.id, o.net_profit_wei) for o in found] == [(o.id, o.net_profit_wei) for o in expected]
    assert found and all(o.net_profit_wei > 10**16 for o in found)
