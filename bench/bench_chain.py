"""Chain-layer benchmarks: client overhead against bare httpx; failover time, no missed block.

All figures come from one run on a local anvil (loopback): the client and the baseline alternate
in rounds so that machine noise hits both alike, and each figure is a median.

* single ``eth_call`` through :class:`RpcClient` vs a bare ``httpx.AsyncClient.post``;
* a batch of 100 ``eth_call`` through ``RpcClient.batch`` vs one bare batched POST;
* failover: an :class:`EndpointPool` over two endpoints of the same node (two local proxies);
  the primary's proxy is either shut (connection refused) or made to hang, and the time from
  that moment to the next successful read is measured, while a :class:`HeadStream` runs over the
  pool and must deliver every block exactly once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
from tests.chain.proxy import DelayProxy
from tests.waiting import wait_until

from bench.result import Result
from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.heads import HeadStream, NewBlock, Rollback
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil

ROUNDS = 15
CALLS_PER_ROUND = 40
BATCH_ROUNDS = 15
BLOCK_TIME = 1.0
# A call that does real EVM work: balanceOf-like eth_call against an account with no code.
CALL = {"to": "0x000000000000000000000000000000000000dEaD", "data": "0x70a08231" + "00" * 32}


async def _overhead(url: str) -> list[Result]:
    client = RpcClient(url)
    bare = httpx.AsyncClient(timeout=10.0)
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [CALL, "latest"]}
    batch_payload = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [CALL, "latest"]}
        for i in range(100)
    ]

    async def bare_call() -> Any:
        response = await bare.post(url, json=payload)
        return response.json()["result"]

    async def bare_batch() -> Any:
        response = await bare.post(url, json=batch_payload)
        return [item["result"] for item in response.json()]

    single_client: list[float] = []
    single_bare: list[float] = []
    batch_client: list[float] = []
    batch_bare: list[float] = []
    calls = [("eth_call", [CALL, "latest"])] * 100
    for _ in range(3):  # warm both connection pools
        await client.request("eth_call", [CALL, "latest"])
        await bare_call()
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS_PER_ROUND):
            await client.request("eth_call", [CALL, "latest"])
        single_client.append((time.perf_counter() - started) / CALLS_PER_ROUND)
        started = time.perf_counter()
        for _ in range(CALLS_PER_ROUND):
            await bare_call()
        single_bare.append((time.perf_counter() - started) / CALLS_PER_ROUND)
    for _ in range(BATCH_ROUNDS):
        started = time.perf_counter()
        await client.batch(calls)
        batch_client.append(time.perf_counter() - started)
        started = time.perf_counter()
        await bare_batch()
        batch_bare.append(time.perf_counter() - started)
    await client.aclose()
    await bare.aclose()
    single_ms = statistics.median(single_client) * 1000
    single_bare_ms = statistics.median(single_bare) * 1000
    batch_ms = statistics.median(batch_client) * 1000
    batch_bare_ms = statistics.median(batch_bare) * 1000
    return [
        Result(
            "chain: single eth_call, client vs bare httpx",
            single_ms,
            "ms",
            baseline=single_bare_ms,
            target="ratio <= 1.3",
            met=single_ms / single_bare_ms <= 1.3,
        ),
        Result(
            "chain: batch of 100 eth_call, client vs bare batch",
            batch_ms,
            "ms",
            baseline=batch_bare_ms,
            target="ratio <= 1.5",
            met=batch_ms / batch_bare_ms <= 1.5,
        ),
    ]


async def _failover(node: Anvil, mode: str) -> Result:
    """Kill (refuse) or hang the primary mid-stream; time to next good read; blocks missed."""
    a = await DelayProxy(node.rpc_url).start()
    b = await DelayProxy(node.rpc_url).start()
    proxies = {a.url: a, b.url: b}
    pool = EndpointPool("bench", node.chain_id, [a.url, b.url], block_time=BLOCK_TIME)
    await pool.start()
    start_block = int(await pool.request("eth_blockNumber", []), 16) + 1
    stream = HeadStream("bench", pool, poll_interval=0.05, start_block=start_block)
    consumer = stream.register()
    await stream.start()
    miner = RpcClient(node.rpc_url)
    try:
        for _ in range(5):
            await miner.request("evm_mine", [])
        primary = pool.primary
        assert primary is not None
        victim = proxies[primary.url]
        if mode == "refused":
            await victim.stop()  # the listening socket closes: new connections are refused
        else:
            victim.hang = True
        died = time.perf_counter()
        await pool.request("eth_blockNumber", [])
        failover_s = time.perf_counter() - died
        for _ in range(5):
            await miner.request("evm_mine", [])
        tip = int(await miner.request("eth_blockNumber", []), 16)
        await wait_until(
            lambda: stream.tracker.last is not None and stream.tracker.last.number >= tip,
            within=15.0,
            what="the stream to reach the tip",
        )
        items = []
        while not consumer.queue.empty():
            items.append(consumer.queue.get_nowait())
    finally:
        await stream.aclose()
        await pool.aclose()
        await miner.aclose()
        await a.stop()
        await b.stop()
    numbers = [i.header.number for i in items if isinstance(i, NewBlock)]
    expected = list(range(start_block, tip + 1))
    rollbacks = sum(1 for i in items if isinstance(i, Rollback))
    missed = len(set(expected) - set(numbers))
    doubled = len(numbers) - len(set(numbers))
    budget = max(BLOCK_TIME, 1.0 if mode == "refused" else 2.0)
    ok = failover_s <= budget and missed == 0 and doubled == 0 and numbers == expected
    return Result(
        f"chain: failover, primary {mode}",
        failover_s,
        "s",
        target=f"<= {budget:g} s, 0 missed",
        met=ok,
        note=f"blocks {len(numbers)}/{len(expected)}, missed {missed}, doubled {doubled}, "
        f"rollbacks {rollbacks}",
    )


async def _main() -> list[Result]:
    with Anvil(chain_id=31337) as node:
        results = await _overhead(node.rpc_url)
        results.append(await _failover(node, "refused"))
        results.append(await _failover(node, "hanging"))
    return results


def run() -> list[Result]:
    return asyncio.run(_main())
