"""WsClient on real anvil: the three subscriptions, deadlines, resubscribe after a restart."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mevstack.chain.errors import RpcResponseError, RpcTimeout
from mevstack.chain.ws import RESUBSCRIBED, Subscription, WsClient
from mevstack.devnet.anvil import Anvil, free_port
from tests.chain.chaindriver import DEPOSIT_SELECTOR, DEPOSIT_TOPIC, WETH9_ARTIFACT, Driver
from tests.waiting import wait_until


async def _next(sub: Subscription, within: float = 5.0) -> Any:
    async with asyncio.timeout(within):
        return await sub.get()


async def test_new_heads_logs_and_pending_transactions() -> None:
    with Anvil(chain_id=31337, extra_args=["--no-mining"]) as node:
        driver = Driver(node.rpc_url)
        bytecode = str(json.loads(WETH9_ARTIFACT.read_text())["bytecode"]).removeprefix("0x")
        deploy = driver.rpc(
            "eth_sendTransaction",
            [{"from": driver.account, "data": "0x" + bytecode, "gas": "0x200000"}],
        )
        driver.rpc("evm_mine", [])
        weth = str(driver.receipt(deploy)["contractAddress"])
        ws = await WsClient(node.ws_url, timeout=3.0).start()
        try:
            await ws.wait_connected()
            assert await ws.request("eth_chainId", []) == "0x7a69"
            with pytest.raises(RpcResponseError):
                await ws.request("no_suchMethod", [])
            with pytest.raises(RpcResponseError):
                await ws.subscribe("logs", {"address": "not-an-address"})
            heads = await ws.subscribe("newHeads")
            pending = await ws.subscribe("newPendingTransactions")
            logs = await ws.subscribe("logs", {"address": weth, "topics": [DEPOSIT_TOPIC]})
            tx = driver.rpc(
                "eth_sendTransaction",
                [{"from": driver.account, "to": weth, "value": "0x5", "data": DEPOSIT_SELECTOR}],
            )
            assert await _next(pending) == tx
            driver.rpc("evm_mine", [])
            head = await _next(heads)
            assert head["number"] == hex(driver.head())
            entry = await _next(logs)
            assert entry["address"].lower() == weth.lower() and int(entry["data"], 16) == 5
            assert entry["transactionHash"] == tx
        finally:
            await ws.aclose()
            driver.close()


async def test_resubscribes_after_node_restart() -> None:
    port = free_port()
    node = Anvil(chain_id=31337, port=port).start()
    ws = await WsClient(node.ws_url, timeout=2.0, max_backoff=0.2).start()
    driver = Driver(node.rpc_url)
    try:
        await ws.wait_connected()
        heads = await ws.subscribe("newHeads")
        driver.rpc("evm_mine", [])
        assert (await _next(heads))["number"] == "0x1"
        node.kill()
        await wait_until(lambda: not ws.connected.is_set(), within=5.0, what="disconnect")
        node = Anvil(chain_id=31337, port=port).start()
        await wait_until(lambda: ws.connected.is_set(), within=10.0, what="reconnect")
        assert ws.connects == 2
        assert await _next(heads) is RESUBSCRIBED  # the consumer's cue to backfill
        driver.rpc("evm_mine", [])
        assert (await _next(heads))["number"] == "0x1"  # the restarted node's first block
    finally:
        driver.close()
        await ws.aclose()
        node.stop()


async def test_unreachable_websocket_times_out_on_deadline() -> None:
    ws = await WsClient(f"ws://127.0.0.1:{free_port()}", timeout=0.3).start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RpcTimeout):
            await ws.request("eth_chainId", [])
        assert loop.time() - started < 2.0
    finally:
        await ws.aclose()
