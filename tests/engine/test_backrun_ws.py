"""The backrun agent fed by ``newPendingTransactions`` over the chain's WebSocket, on real anvil.

The engine reaches the node's HTTP side through a proxy that records every method, so each test
can prove the mempool was never read with ``txpool_content`` while the subscription served, and
its WebSocket (in the failover test) through a TCP path that can be cut.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mevstack.chain.rpc import RpcClient
from mevstack.chain.ws import WsClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.engine.backrun_agent import MempoolPoller, PendingFeed
from mevstack.engine.chain_runtime import ChainRuntime
from mevstack.engine.engine import Engine
from mevstack.events import Event
from tests.chain.proxy import DelayProxy, TcpProxy
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
def manual_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """A devnet chain of its own whose blocks are mined by hand; account 0 holds WETH and has
    approved the routers."""
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        dep = deploy_chain(node.rpc_url)
        with DevnetRpc(node.rpc_url, timeout=60) as rpc:
            Trader(rpc, dep)
            rpc.call("evm_setAutomine", [False])
        yield node, dep


@dataclass
class Running:
    engine: Engine
    runtime: ChainRuntime
    mempool: MempoolPoller
    proxy: DelayProxy
    rpc: DevnetRpc
    dep: ChainDeployment
    events: list[Event]

    @property
    def txpool_reads(self) -> int:
        return self.proxy.methods["txpool_content"]

    def send_victim(self) -> str:
        """A big WETH → USDC swap on uniswap-v2 from account 0, left pending."""
        dep = self.dep
        router = next(d.router for d in dep.v2 if d.name == "uniswap-v2")
        data = encode_call(
            V2_SWAP, 300 * 10**18, 0, [dep.weth, dep.token("USDC").address], dep.deployer, DEADLINE
        )
        return self.rpc.send(dep.deployer, router, data, gas=3_000_000)

    def backrun(self, trigger: str, status: str = "detected") -> dict[str, Any] | None:
        for e in self.events:
            data: dict[str, Any] = e.data
            if (data["kind"], data["trigger_tx"], data["status"]) == ("backrun", trigger, status):
                return data
        return None


@contextlib.asynccontextmanager
async def running(
    node: Anvil, dep: ChainDeployment, tmp_path: Path, ws_url: str | None
) -> AsyncIterator[Running]:
    rpc = DevnetRpc(node.rpc_url, timeout=60)
    snapshot = rpc.call("evm_snapshot")
    proxy = await DelayProxy(node.rpc_url).start()
    extra: dict[str, Any] = {"strategies": ["backrun"]}
    if ws_url is not None:
        extra["ws"] = [ws_url]
    settings = engine_settings(tmp_path, chain_entry("ethereum", proxy.url, dep, **extra))
    try:
        async with running_engine(settings, events=["mev.opportunity"]) as (engine, events):
            runtime = engine.runtimes["ethereum"]
            assert runtime.mempool is not None
            await wait_until(lambda: runtime.market.pools is not None, 30, "the market")
            yield Running(engine, runtime, runtime.mempool, proxy, rpc, dep, events)
    finally:
        await proxy.stop()
        rpc.call("anvil_dropAllTransactions")
        assert rpc.call("evm_revert", [snapshot]) is True
        rpc.close()


async def test_a_pushed_victim_gets_its_backrun_without_reading_the_mempool_and_expires_when_mined(
    manual_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = manual_chain
    async with running(node, dep, tmp_path, node.ws_url) as run:
        await wait_until(lambda: run.mempool.subscribed, 10, "the pending-tx subscription")
        # one read at start (what was pending before the subscription), none after
        await wait_until(lambda: run.txpool_reads == 1, 10, "the start-up mempool read")
        assert run.mempool.full_objects  # anvil sends whole transactions
        victim = run.send_victim()
        await wait_until(lambda: run.backrun(victim) is not None, 15, "the victim's backrun")
        assert run.mempool.feed.pushed >= 1
        found = run.backrun(victim)
        assert found is not None
        assert dep.pool("uniswap-v2", "WETH", "USDC").address in {h["pool"] for h in found["path"]}

        run.rpc.call("evm_mine")  # the trigger is mined: the backrun is withdrawn
        await wait_until(lambda: run.backrun(victim, "expired") is not None, 15, "the withdrawal")
        expired = run.backrun(victim, "expired")
        assert expired is not None and expired["id"] == found["id"]
        assert run.proxy.methods["eth_getTransactionByHash"] >= 1  # how it learnt it
        assert run.txpool_reads == 1


async def test_a_replaced_trigger_withdraws_its_backrun_at_once(
    manual_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = manual_chain
    async with running(node, dep, tmp_path, node.ws_url) as run:
        await wait_until(lambda: run.mempool.subscribed, 10, "the pending-tx subscription")
        await wait_until(lambda: run.txpool_reads == 1, 10, "the start-up mempool read")
        victim = run.send_victim()
        await wait_until(lambda: run.backrun(victim) is not None, 15, "the victim's backrun")
        tx = run.rpc.call("eth_getTransactionByHash", [victim])
        head = run.rpc.call("eth_blockNumber")
        # the sender cancels: a plain transfer to itself, same nonce, twice the fees
        cancel = run.rpc.call(
            "eth_sendTransaction",
            [
                {
                    "from": dep.deployer,
                    "to": dep.deployer,
                    "value": "0x0",
                    "gas": hex(21_000),
                    "nonce": tx["nonce"],
                    "maxFeePerGas": hex(2 * int(tx["maxFeePerGas"], 16)),
                    "maxPriorityFeePerGas": hex(2 * int(tx["maxPriorityFeePerGas"], 16)),
                }
            ],
        )
        assert run.rpc.call("eth_getTransactionByHash", [victim]) is None  # the node replaced it
        await wait_until(lambda: run.backrun(victim, "expired") is not None, 15, "the withdrawal")
        assert run.rpc.call("eth_blockNumber") == head  # no block was needed to learn it
        assert run.txpool_reads == 1
        assert run.backrun(cancel) is None


async def test_the_poller_takes_over_while_the_socket_is_down_and_nothing_is_lost(
    manual_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = manual_chain
    path = await TcpProxy(node.port).up()
    try:
        async with running(node, dep, tmp_path, path.ws_url) as run:
            await wait_until(lambda: run.mempool.subscribed, 10, "the pending-tx subscription")
            await wait_until(lambda: run.txpool_reads == 1, 10, "the start-up mempool read")
            first = run.send_victim()
            await wait_until(lambda: run.backrun(first) is not None, 15, "a pushed backrun")
            assert run.txpool_reads == 1

            await path.down()  # the socket is cut; the node itself keeps running
            await wait_until(lambda: not run.mempool.subscribed, 10, "the socket to be down")
            reads = run.txpool_reads
            during = run.send_victim()
            await wait_until(lambda: run.backrun(during) is not None, 15, "a polled backrun")
            assert run.txpool_reads > reads  # found by polling

            # the outage ends: the subscription is made again and the mempool read to catch up
            catch_ups = run.mempool.catch_ups
            await path.up()
            await wait_until(lambda: run.mempool.subscribed, 15, "the subscription again")
            await wait_until(
                lambda: run.mempool.catch_ups > catch_ups and run.mempool.caught_up,
                10,
                "the catch-up read",
            )
            reads = run.txpool_reads
            after = run.send_victim()
            await wait_until(lambda: run.backrun(after) is not None, 15, "a pushed backrun again")
            assert run.txpool_reads == reads
            # none of the three was withdrawn on the way: they are all still pending
            assert all(run.backrun(h, "expired") is None for h in (first, during, after))

            run.rpc.call("evm_mine")
            for trigger in (first, during, after):
                await wait_until(
                    lambda t=trigger: run.backrun(t, "expired") is not None,  # type: ignore[misc]
                    15,
                    "every backrun withdrawn once mined",
                )
    finally:
        await path.down()


async def test_a_node_that_pushes_hashes_is_asked_for_the_transactions_in_one_batch(
    manual_chain: tuple[Anvil, ChainDeployment],
) -> None:
    node, dep = manual_chain
    proxy = await DelayProxy(node.rpc_url).start()
    client = RpcClient(proxy.url)
    ws = await WsClient(node.ws_url, chain_id=dep.chain_id).start()
    feed = PendingFeed()
    mempool = MempoolPoller("ethereum", client, feed, 0.25, ws=ws, full_objects=False)
    mempool.start()
    rpc = DevnetRpc(node.rpc_url)
    try:
        await wait_until(lambda: mempool.subscribed and mempool.caught_up, 10, "the subscription")
        sent = {rpc.send(dep.deployer, dep.deployer, value=i, gas=21_000).lower() for i in range(5)}
        await wait_until(lambda: sent <= set(feed.new), 10, "the five transactions")
        for tx_hash in sent:
            tx = feed.new[tx_hash]
            assert tx["from"] == dep.deployer.lower() and tx["blockNumber"] is None
        assert feed.pushed == 5 and feed.pending is not None  # the start-up read only
        assert proxy.methods["eth_getTransactionByHash"] == 5
        assert proxy.methods["txpool_content"] == 1
    finally:
        await mempool.aclose()
        await ws.aclose()
        await client.aclose()
        await proxy.stop()
        rpc.call("anvil_dropAllTransactions")
        rpc.close()
