"""Noise traders swap through the real routers and move prices apart between DEXes."""

from __future__ import annotations

import asyncio
import random
import threading

from mevstack.devnet.activity import MAX_TRADE_USD, NoiseTraders, choose_trade
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc
from tests.chain.proxy import DelayProxy
from tests.waiting import wait_until

Devnet = tuple[Anvil, ChainDeployment]


def _prices(rpc: DevnetRpc, d: ChainDeployment) -> dict[str, tuple[int, int]]:
    """Per pool: V2 reserves, or V3 (sqrtPriceX96, liquidity)."""
    out = {}
    for pool in d.pools:
        if pool.kind == "uniswap_v2":
            r0, r1, _ = rpc.view(pool.address, "getReserves()", ["uint112", "uint112", "uint32"])
            out[pool.address] = (r0, r1)
        else:
            sqrt_price = rpc.view(pool.address, "slot0()", ["uint160", "int24"])[0]
            out[pool.address] = (sqrt_price, rpc.view(pool.address, "liquidity()", ["uint128"]))
    return out


def test_choose_trade_is_seeded_and_bounded(devnet_chain: Devnet) -> None:
    _, d = devnet_chain
    symbols = {t.address: t.symbol for t in d.tokens.values()}
    first = [choose_trade(random.Random(7), d.pools, symbols, 4) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(3)
    trades = [choose_trade(rng, d.pools, symbols, 4) for _ in range(300)]
    assert {t.pool.kind for t in trades} == {"uniswap_v2", "uniswap_v3"}
    assert {t.trader for t in trades} == {0, 1, 2, 3}
    weth_in = [t.amount_in for t in trades if t.token_in == d.weth]
    assert weth_in and max(weth_in) <= MAX_TRADE_USD * 10**18 // 3000
    for t in trades:
        assert {t.token_in, t.token_out} == {t.pool.token0, t.pool.token1}


def test_activity_moves_prices(chain_snapshot: Devnet) -> None:
    node, d = chain_snapshot
    with DevnetRpc(node.rpc_url) as rpc:
        before = _prices(rpc, d)
        traders = NoiseTraders(node.rpc_url, d, seed=11)
        try:
            traders.setup()
            hashes = [traders.step() for _ in range(40)]
            receipts = rpc.wait_receipts(hashes)  # raises if any swap reverted
        finally:
            traders.close()
        assert len(receipts) == 40
        after = _prices(rpc, d)
    moved = [p for p in d.pools if after[p.address] != before[p.address]]
    assert len(moved) >= len(d.pools) // 2
    assert {p.kind for p in moved} == {"uniswap_v2", "uniswap_v3"}

    # The two V2 DEXes' price gaps change: arbitrage appears and disappears.
    def gap(prices: dict[str, tuple[int, int]], a: str, b: str) -> tuple[int, int]:
        pa = d.pool("uniswap-v2", a, b).address
        pb = d.pool("sushi-v2", a, b).address
        return prices[pa][1] * prices[pb][0], prices[pb][1] * prices[pa][0]

    pairs = [("WETH", "USDC"), ("WETH", "USDT"), ("WETH", "DAI"), ("WBTC", "WETH")]
    assert any(gap(before, *pair) != gap(after, *pair) for pair in pairs)


def test_traders_lean_against_deviation(devnet_chain: Devnet) -> None:
    _, d = devnet_chain
    symbols = {t.address: t.symbol for t in d.tokens.values()}
    pool = d.pool("uniswap-v2", "WETH", "USDC")
    rng = random.Random(5)

    def share_selling_token0(deviation: float) -> float:
        trades = [
            choose_trade(rng, [pool], symbols, 4, {pool.address: deviation}) for _ in range(2000)
        ]
        return sum(t.token_in == pool.token0 for t in trades) / len(trades)

    assert 0.85 < share_selling_token0(0.05) < 0.95  # token0 5 % too dear: mostly sold
    assert 0.05 < share_selling_token0(-0.05) < 0.15
    assert 0.45 < share_selling_token0(0.0) < 0.55


def test_seeded_pools_sit_near_reference(devnet_chain: Devnet) -> None:
    node, d = devnet_chain
    traders = NoiseTraders(node.rpc_url, d)
    try:
        deviations = traders.deviations()
    finally:
        traders.close()
    assert set(deviations) == {p.address for p in d.pools}
    # Seeded skews are within ±1.2 %, so every mid price is within that of the catalog price.
    assert all(abs(x) < 0.0125 for x in deviations.values()), deviations
    assert any(abs(x) > 0.0005 for x in deviations.values())


async def test_traders_back_off_while_the_node_is_unreachable_then_trade_again(
    chain_snapshot: Devnet,
) -> None:
    node, d = chain_snapshot
    proxy = await DelayProxy(node.rpc_url).start()
    # the traders are synchronous: they run in threads while the proxy serves on this loop
    traders = await asyncio.to_thread(NoiseTraders, proxy.url, d, seed=5)
    stop = threading.Event()
    runner: asyncio.Future[None] | None = None

    def mined() -> int:
        with DevnetRpc(node.rpc_url) as rpc:
            return sum(
                int(rpc.call("eth_getTransactionCount", [a, "latest"]), 16)
                for a in traders.accounts
            )

    try:
        await asyncio.to_thread(traders.setup)
        runner = asyncio.ensure_future(
            asyncio.to_thread(traders.run, stop, interval=0.02, max_backoff=0.2)
        )
        await wait_until(lambda: traders.sent >= 3, 20, "the traders trading")
        proxy.down = True  # the node is gone, as far as the traders can tell
        await wait_until(lambda: traders.failures >= 3, 20, "failures, retried")
        assert not runner.done()
        sent, before = traders.sent, await asyncio.to_thread(mined)
        proxy.down = False
        await wait_until(lambda: traders.sent >= sent + 5, 20, "the traders trading again")
        # what they send now lands (their nonces were taken from the node again)
        assert await asyncio.to_thread(mined) >= before + 4
    finally:
        stop.set()
        if runner is not None:
            await runner
        traders.close()
        await proxy.stop()
