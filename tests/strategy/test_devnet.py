"""On the real devnet (anvil, shipped Uniswap bytecode): planted price differences are found, and
every hop amount equals what executing that path through the real routers yields, to the wei."""

from __future__ import annotations

from typing import Any

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.deploy import PoolInfo as DevnetPool
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.market.base import PoolInfo
from mevstack.market.pools import KINDS
from mevstack.market.state import load_pools
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.valuation import GasInputs

MAX_UINT = 2**256 - 1
DEADLINE = 2**40
V2_SWAP = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
V3_SWAP = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
GAS = GasInputs(gas_price_wei=10**9)


def market_infos(dep: ChainDeployment) -> list[PoolInfo]:
    return [
        PoolInfo(p.dex, p.kind, p.address, p.token0, p.token1,
                 p.fee_bps if p.kind == "uniswap_v2" else p.fee, p.tick_spacing, 0)
        for p in dep.pools
    ]  # fmt: skip


async def states_at(url: str, dep: ChainDeployment, block: int) -> dict[str, Any]:
    client = RpcClient(url, timeout=60)
    try:
        loaded = await load_pools(client, KINDS, market_infos(dep), block)
    finally:
        await client.aclose()
    return {state.address: state for _info, state in loaded}


class Trader:
    """The devnet's unlocked account 0, trading through the real periphery."""

    def __init__(self, rpc: DevnetRpc, dep: ChainDeployment) -> None:
        self.rpc, self.dep, self.me = rpc, dep, dep.deployer
        spenders = [dep.v3.swap_router, *(d.router for d in dep.v2)]
        rpc.transact(self.me, dep.weth, encode_call("deposit()"), value=50_000 * 10**18)
        rpc.wait_receipts([
            rpc.send(self.me, t.address, encode_call("approve(address,uint256)", s, MAX_UINT))
            for t in dep.tokens.values() for s in spenders
        ])  # fmt: skip

    def balance(self, token: str) -> int:
        return int(self.rpc.view(token, "balanceOf(address)", ["uint256"], self.me))

    def swap(self, pool: DevnetPool, token_in: str, token_out: str, amount_in: int) -> int:
        """One exact-input swap through the pool's router; returns what the account received."""
        before = self.balance(token_out)
        router = next((d.router for d in self.dep.v2 if d.name == pool.dex), None)
        if router is not None:
            data = encode_call(V2_SWAP, amount_in, 0, [token_in, token_out], self.me, DEADLINE)
        else:  # the SwapRouter picks the pool by (tokens, fee tier)
            router = self.dep.v3.swap_router
            params = (token_in, token_out, pool.fee, self.me, DEADLINE, amount_in, 0, 0)
            data = encode_call(V3_SWAP, params)
        self.rpc.wait_receipts([self.rpc.send(self.me, router, data, gas=3_000_000)])
        return self.balance(token_out) - before

    def execute(self, opp: Opportunity) -> list[int]:
        """Each hop of the path in turn, from its exact amount_in; the outputs received."""
        pools = {p.address: p for p in self.dep.pools}
        return [self.swap(pools[h.pool], h.token_in, h.token_out, h.amount_in) for h in opp.path]


def v3_ticks(opp: Opportunity, states: dict[str, Any]) -> int:
    """Initialised ticks the path's V3 hops cross (from the market's own exact quotes)."""
    total = 0
    for hop in opp.path:
        state = states[hop.pool]
        if state.kind == "uniswap_v3":
            total += state.quote_exact_in(hop.token_in == state.token0, hop.amount_in).ticks_crossed
    return total


def scan_now(dep: ChainDeployment, states: dict[str, Any], block: int) -> list[Opportunity]:
    scanner = ArbitrageScanner(ChainTerms("ethereum", 1, (dep.weth,), dep.weth))
    scanner.add_pools(states.values())
    return scanner.scan(states, block_number=block, gas=GAS, detected_at="2026-01-01T00:00:00Z")


async def test_planted_v2_v2_and_v2_v3_differences_match_real_execution(
    chain_snapshot: tuple[Anvil, ChainDeployment],
) -> None:
    node, dep = chain_snapshot
    usdc, weth = dep.token("USDC").address, dep.weth
    uni = dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = dep.pool("sushi-v2", "WETH", "USDC")
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        trader = Trader(rpc, dep)
        # plant: dump 600 WETH into uniswap-v2's WETH/USDC (WETH cheap there, by ~25 %)
        trader.swap(uni, weth, usdc, 600 * 10**18)
        block = int(rpc.call("eth_blockNumber"), 16)
        states = await states_at(node.rpc_url, dep, block)
        found = scan_now(dep, states, block)
        assert found, "the planted difference must be found"
        v2v2 = [o for o in found if {h.pool for h in o.path} == {uni.address, sushi.address}]
        assert len(v2v2) == 1
        opp = v2v2[0]
        assert opp.token == weth and opp.path[0].pool == sushi.address  # buy WETH cheap...
        # against V3 the optimum crosses an initialised tick (the ±2 % positions' edge)
        crossing = [o for o in found if v3_ticks(o, states) > 0]
        assert crossing, "the planted gap is also open against the V3 pools, across a tick"
        triangle = next(o for o in found if len(o.path) == 3)
        executed: list[list[str]] = []
        for candidate in (opp, crossing[0], triangle):
            snapshot = rpc.call("evm_snapshot")
            try:
                weth_before = trader.balance(weth)
                received = trader.execute(candidate)
                assert received == [h.amount_out for h in candidate.path]
                assert trader.balance(weth) - weth_before == candidate.gross_profit
                executed.append([states[h.pool].kind for h in candidate.path])
            finally:
                assert rpc.call("evm_revert", [snapshot]) is True
        assert executed[0] == ["uniswap_v2", "uniswap_v2"] and "uniswap_v3" in executed[1]
        assert len(executed[2]) == 3
