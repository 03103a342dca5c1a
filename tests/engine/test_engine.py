"""The Engine on a devnet chain with interval mining: events on the memory bus, the opportunity
lifecycle (detected → expired once someone takes it), and the EngineView the API reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.events import Event
from mevstack.market.base import same_state
from mevstack.market.pools import KINDS
from mevstack.market.state import load_pools
from tests.engine.world import (
    DEADLINE,
    V2_SWAP,
    Trader,
    chain_entry,
    engine_settings,
    running_engine,
)
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def mining_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """A devnet chain of its own that mines a block every second (the shared one automines)."""
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        dep = deploy_chain(node.rpc_url)
        with DevnetRpc(node.rpc_url) as rpc:
            rpc.call("evm_setAutomine", [False])
            rpc.call("evm_setIntervalMining", [1])
        yield node, dep


def _opportunities(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event.value == "mev.opportunity"]


@pytest.mark.parametrize("scan_in_process", [True, False], ids=["scan-process", "scan-inline"])
async def test_engine_publishes_chain_events_and_the_opportunity_lifecycle(
    mining_chain: tuple[Anvil, ChainDeployment], tmp_path: Path, scan_in_process: bool
) -> None:
    node, dep = mining_chain
    settings = engine_settings(tmp_path, chain_entry("ethereum", node.rpc_url, dep))
    async with running_engine(settings, scan_in_process=scan_in_process) as (engine, events):
        wanted = {"block.new", "node.status", "gas.price", "mev.opportunity", "agent.status"}
        await wait_until(
            lambda: wanted <= {e.event.value for e in events}, 30, "every kind of event"
        )
        assert all(e.chain == "ethereum" for e in events)
        # the view the API reads: live nodes and gas, stored opportunities, agents
        nodes = engine.nodes()
        assert [n["state"] for n in nodes] == ["ok"] and nodes[0]["head_block"] >= 1
        assert engine.gas() and int(engine.gas()[0]["base_fee_wei"]) > 0
        # events go out first, the store write follows
        stored: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not stored:
                stored = await engine.opportunities(
                    chain="ethereum", kind=None, status=None, limit=100
                )
                await asyncio.sleep(0.01)  # polling the store, bounded by the timeout
        assert all(o["status"] == "detected" for o in stored)
        agent = engine.supervisor.get("arbitrage:ethereum")
        assert agent is not None
        await wait_until(lambda: agent.counters.items >= 1, 10, "the first scan to be counted")
        agents = await engine.agents()
        assert [(a["id"], a["state"]) for a in agents] == [("arbitrage:ethereum", "running")]
        assert agents[0]["counters"]["items"] >= 1 and agents[0]["scan"]["full_scans"] >= 1

        # plant a price difference; the engine finds it within a few blocks
        weth, usdc = dep.weth, dep.token("USDC").address
        uni = dep.pool("uniswap-v2", "WETH", "USDC")
        sushi = dep.pool("sushi-v2", "WETH", "USDC")
        pair = {uni.address, sushi.address}
        rpc = DevnetRpc(node.rpc_url, timeout=60)
        try:
            trader = await asyncio.to_thread(Trader, rpc, dep)
            await asyncio.to_thread(trader.swap, uni, weth, usdc, 200 * 10**18)
            planted_at = int(rpc.call("eth_blockNumber"), 16)

            def planted() -> dict[str, Any] | None:
                for o in reversed(_opportunities(events)):
                    if (
                        {h["pool"] for h in o["path"]} == pair
                        and o["token"] == weth
                        and o["block_number"] >= planted_at
                        and o["status"] == "detected"
                    ):
                        match: dict[str, Any] = o
                        return match
                return None

            await wait_until(lambda: planted() is not None, 20, "the planted opportunity")
            found = planted()
            assert found is not None
            # taking it exactly as published yields exactly its amounts, and it then expires
            received, profit = await asyncio.to_thread(trader.execute, found)
            assert received == [int(h["amount_out"]) for h in found["path"]]
            assert profit == int(found["gross_profit"])
            await wait_until(
                lambda: any(
                    o["id"] == found["id"] and o["status"] == "expired"
                    for o in _opportunities(events)
                ),
                20,
                "the taken opportunity to expire",
            )
        finally:
            rpc.close()
        async with asyncio.timeout(10):
            status = ""
            while status != "expired":
                await asyncio.sleep(0.01)  # polling the store, bounded by the timeout
                status = (await engine.opportunity(found["id"]))["status"]

        # agents stop and start through the view
        stopped = await engine.set_agent_running("arbitrage:ethereum", False)
        assert stopped["state"] == "stopped"
        started = await engine.set_agent_running("arbitrage:ethereum", True)
        assert started["state"] in ("starting", "running")
        items = agent.counters.items
        await wait_until(lambda: agent.counters.items > items, 10, "the restarted agent to scan")
        assert agent.state.value == "running"
        summary = await engine.metrics_summary()
        chain = summary["chains"][0]
        assert chain["pools"] == len(dep.pools) and chain["market_builds"] == 1
        print("scan times:", chain["scan"])


async def test_a_reorg_rolls_the_market_back_and_rescans(
    mining_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = mining_chain
    settings = engine_settings(tmp_path, chain_entry("ethereum", node.rpc_url, dep))
    rpc = DevnetRpc(node.rpc_url, timeout=60)
    try:
        async with running_engine(
            settings, events=["chain.reorg"], maxsize=1000, scan_in_process=False
        ) as (engine, events):
            runtime = engine.runtimes["ethereum"]
            await wait_until(lambda: runtime.scan_times.full_scans >= 1, 30, "the first full scan")
            uni = dep.pool("uniswap-v2", "WETH", "USDC")
            trader = await asyncio.to_thread(Trader, rpc, dep)
            await asyncio.to_thread(trader.swap, uni, dep.weth, dep.token("USDC").address, 10**20)
            swapped_at = int(rpc.call("eth_blockNumber"), 16)
            pools = runtime.market.pools
            assert pools is not None
            await wait_until(
                lambda: pools.head is not None and pools.head[0] >= swapped_at, 10, "the swap block"
            )
            moved = pools.get(uni.address)
            # replace the swap's block (and the one after, if mined) with empty blocks
            depth = int(rpc.call("eth_blockNumber"), 16) - swapped_at + 1
            assert rpc.call("anvil_reorg", [depth, []]) is None
            full_before = runtime.scan_times.full_scans
            await wait_until(lambda: bool(events), 10, "a chain.reorg event")
            await wait_until(
                lambda: runtime.scan_times.full_scans > full_before, 10, "a full rescan"
            )
            assert events[0].data["to_block"] < swapped_at
            head = runtime.market.pools
            assert head is not None and head.head is not None
            info = head.info(uni.address)
            assert info is not None
            client = RpcClient(node.rpc_url)
            try:
                fresh = await load_pools(client, KINDS, [info], head.head[0])
            finally:
                await client.aclose()
            kept = head.get(uni.address)
            assert kept is not None and moved is not None
            assert same_state(kept, fresh[0][1]) and not same_state(kept, moved)
    finally:
        rpc.close()


async def test_a_pending_victim_swap_gets_a_backrun_that_matches_execution(
    mining_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = mining_chain
    entry = chain_entry("ethereum", node.rpc_url, dep, strategies=["arbitrage", "backrun"])
    settings = engine_settings(tmp_path, entry)
    rpc = DevnetRpc(node.rpc_url, timeout=60)
    trader = await asyncio.to_thread(Trader, rpc, dep)
    try:
        async with running_engine(settings, events=["mev.opportunity"]) as (engine, events):
            runtime = engine.runtimes["ethereum"]
            await wait_until(lambda: runtime.scan_times.full_scans >= 1, 30, "the market")
            rpc.call("evm_setIntervalMining", [0])  # from here on, blocks are mined by hand
            uni = dep.pool("uniswap-v2", "WETH", "USDC")
            usdc = dep.token("USDC").address
            router = next(d.router for d in dep.v2 if d.name == "uniswap-v2")
            victim = rpc.send(
                dep.deployer,
                router,
                encode_call(V2_SWAP, 300 * 10**18, 0, [dep.weth, usdc], dep.deployer, DEADLINE),
                gas=3_000_000,
            )

            def backrun() -> dict[str, Any] | None:
                for e in events:
                    if e.data["kind"] == "backrun" and e.data["trigger_tx"] == victim:
                        found: dict[str, Any] = e.data
                        return found
                return None

            await wait_until(lambda: backrun() is not None, 15, "a backrun of the pending victim")
            found = backrun()
            assert found is not None and found["status"] == "detected"
            assert uni.address in {h["pool"] for h in found["path"]}
            snapshot = rpc.call("evm_snapshot")
            try:
                rpc.call("evm_mine")
                rpc.wait_receipts([victim])
                rpc.call("evm_setAutomine", [True])
                received, profit = await asyncio.to_thread(trader.execute, found)
                assert received == [int(h["amount_out"]) for h in found["path"]]
                assert profit == int(found["gross_profit"])
            finally:
                rpc.call("evm_setAutomine", [False])
                assert rpc.call("evm_revert", [snapshot]) is True
            rpc.call("anvil_dropAllTransactions")  # the victim leaves the mempool unmined
            await wait_until(
                lambda: any(
                    e.data["id"] == found["id"] and e.data["status"] == "expired" for e in events
                ),
                15,
                "the backrun to be withdrawn",
            )
    finally:
        rpc.call("anvil_dropAllTransactions")
        rpc.call("evm_setIntervalMining", [1])
        rpc.close()
