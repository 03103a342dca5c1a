"""Four-pool cycles (``max_hops = 4``) through the whole scanner: screen, exact sizing with V2
and V3 legs, valuation, opportunity building, and real execution on the devnet."""

from __future__ import annotations

import dataclasses
from typing import Any

from eth_utils.crypto import keccak

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.artifacts import compile_vyper
from mevstack.devnet.deploy import ChainDeployment, Token
from mevstack.devnet.deploy import PoolInfo as DevnetPool
from mevstack.devnet.rpc import AccountSender, DevnetRpc, create2_address, encode_args, encode_call
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.valuation import GasInputs
from tests.strategy.pools import addr, v2, v3
from tests.strategy.test_devnet import GAS, Trader, states_at

E18 = 10**18
MAX_UINT = 2**256 - 1
DEADLINE = 2**40
ADD_LIQUIDITY = "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)"


def scanner_for(weth: str, max_hops: int, states: dict[str, Any]) -> ArbitrageScanner:
    scanner = ArbitrageScanner(ChainTerms("ethereum", 1, (weth,), weth, max_hops=max_hops))
    scanner.add_pools(states.values())
    return scanner


def test_four_pool_cycle_with_a_v3_leg_is_screened_sized_and_built() -> None:
    """WETH -> A (V2) -> B (V3, across initialised ticks) -> C (V2) -> WETH (V2, C dear there):
    found only with ``max_hops = 4``, its hop amounts are the pools' exact quotes chained, and no
    input one wei away does better."""
    weth, a, b, c = addr(0x10), addr(0x20), addr(0x30), addr(0x40)
    narrow = 10**21  # ~1,000 tokens of depth inside ±60 ticks: the optimum leaves that range
    pools = [
        v2(1, weth, a, 1_000 * E18, 1_000 * E18),
        v3(2, a, b, 0, [(-6_000, 6_000, narrow), (-60, 60, narrow), (-120, -60, narrow)]),
        v2(3, b, c, 1_000 * E18, 1_000 * E18),
        v2(4, c, weth, 1_000 * E18, 1_100 * E18),
    ]
    states = {p.address: p for p in pools}
    three = scanner_for(weth, 3, states)
    assert len(three.index) == 0
    assert three.scan(states, block_number=100, gas=GAS, detected_at="t") == []
    four = scanner_for(weth, 4, states)
    assert four.index.leg_codes().shape == (1, 4)
    for gas in (GasInputs(gas_price_wei=0), GAS):
        found = four.scan(states, block_number=100, gas=gas, detected_at="t")
        assert four.last_stats.screened == 1 and four.last_stats.sized == 1
        assert len(found) == 1
        opp = found[0]
        assert [h.pool for h in opp.path] == [p.address for p in pools]
        hops = [(h.token_in, h.token_out) for h in opp.path]
        assert hops == [(weth, a), (a, b), (b, c), (c, weth)]
        amount = opp.amount_in
        ticks = 0
        for hop in opp.path:
            state = states[hop.pool]
            assert hop.amount_in == amount
            quote = state.quote_exact_in(hop.token_in == state.token0, amount)
            assert hop.amount_out == quote.amount_out
            ticks += getattr(quote, "ticks_crossed", 0)
            amount = quote.amount_out
        assert amount == opp.amount_out and opp.gross_profit == amount - opp.amount_in > 0
        assert ticks > 0, "the V3 leg's optimum crosses an initialised tick"
        assert opp.net_profit_wei == opp.gross_profit - opp.gas_cost_wei
        assert opp.gas_cost_wei == opp.gas_estimate * gas.gas_price_wei
        if gas.gas_price_wei == 0:
            for x in (opp.amount_in - 1, opp.amount_in + 1):
                out = x
                for hop in opp.path:
                    state = states[hop.pool]
                    out = state.quote_exact_in(hop.token_in == state.token0, out).amount_out
                assert out - x <= opp.gross_profit


def _deploy_four_cycle(
    rpc: DevnetRpc, dep: ChainDeployment
) -> tuple[ChainDeployment, dict[str, DevnetPool]]:
    """Three fresh tokens A, B, C and five fair uniswap-v2 pairs: WETH/A, A/B, B/C, C/WETH (a
    4-cycle) and A/C (a triangle with WETH); ``dep`` extended with them."""
    tx = AccountSender(rpc, dep.deployer)
    code = compile_vyper("erc20").bytecode
    fresh: dict[str, Token] = {}
    for symbol in ("FA", "FB", "FC"):
        ctor = encode_args(
            ["string", "string", "uint8", "uint256"], f"Four {symbol}", symbol, 18, 10**12 * E18
        )
        fresh[symbol] = Token(tx.deploy(code, ctor), symbol, 18)
    tokens = {**dep.tokens, **fresh}
    dex = next(d for d in dep.v2 if d.name == "uniswap-v2")
    tx.send(dep.weth, encode_call("deposit()"), value=10_000 * E18, gas=100_000)
    for token in fresh.values():
        tx.send(token.address, encode_call("approve(address,uint256)", dex.router, MAX_UINT),
                gas=100_000)  # fmt: skip
    tx.send(dep.weth, encode_call("approve(address,uint256)", dex.router, MAX_UINT), gas=100_000)
    pools: dict[str, DevnetPool] = {}
    for sym_a, sym_b in (("WETH", "FA"), ("FA", "FB"), ("FB", "FC"), ("FC", "WETH"), ("FA", "FC")):
        t_a, t_b = tokens[sym_a].address, tokens[sym_b].address
        amount = 1_000 * E18
        tx.send(dex.router,
                encode_call(ADD_LIQUIDITY, t_a, t_b, amount, amount, amount, amount,
                            dep.deployer, DEADLINE),
                gas=4_000_000)  # fmt: skip
        t0, t1 = sorted((t_a, t_b), key=lambda t: int(t, 16))
        salt = bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:])
        address = create2_address(dex.factory, keccak(salt), bytes.fromhex(dex.init_code_hash[2:]))
        pools[f"{sym_a}/{sym_b}"] = DevnetPool(dex.name, "uniswap_v2", address, t0, t1, 3000)
    tx.confirm()
    extended = dataclasses.replace(dep, tokens=tokens, pools=[*dep.pools, *pools.values()])
    return extended, pools


async def test_planted_four_pool_cycle_is_found_only_with_four_hops_and_executes_exactly(
    chain_snapshot: tuple[Anvil, ChainDeployment],
) -> None:
    node, base_dep = chain_snapshot
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        dep, fresh = _deploy_four_cycle(rpc, base_dep)
        weth = dep.weth
        trader = Trader(rpc, dep)
        # plant: dump FB into FB/FC, FB is now cheap there; only 4-cycles pass through FB
        trader.swap(fresh["FB/FC"], dep.token("FB").address, dep.token("FC").address, 150 * E18)
        block = int(rpc.call("eth_blockNumber"), 16)
        states = await states_at(node.rpc_url, dep, block)
        new_pools = {p.address for p in fresh.values()}
        cycle = {fresh[k].address for k in ("WETH/FA", "FA/FB", "FB/FC", "FC/WETH")}

        def on_new(found: list[Opportunity]) -> list[Opportunity]:
            return [o for o in found if {h.pool for h in o.path} & new_pools]

        three = scanner_for(weth, 3, states)
        triangle = {fresh[k].address for k in ("WETH/FA", "FA/FC", "FC/WETH")}
        assert any(
            {three.index.pools[p].address for p in c.pools} == triangle for c in three.index.cycles
        ), "the fair WETH-FA-FC triangle is screened with three hops"
        assert on_new(three.scan(states, block_number=block, gas=GAS, detected_at="t")) == []

        four = scanner_for(weth, 4, states)
        found = on_new(four.scan(states, block_number=block, gas=GAS, detected_at="t"))
        assert len(found) == 1, found
        opp = found[0]
        assert {h.pool for h in opp.path} == cycle and len(opp.path) == 4
        assert opp.token == weth and opp.path[0].token_in == weth
        assert opp.net_profit_wei > 0 and opp.expires_at_block == block + 2
        snapshot = rpc.call("evm_snapshot")
        try:
            weth_before = trader.balance(weth)
            received = trader.execute(opp)
            assert received == [h.amount_out for h in opp.path]
            assert trader.balance(weth) - weth_before == opp.gross_profit
        finally:
            assert rpc.call("evm_revert", [snapshot]) is True
