"""EndpointPool on real anvil nodes: failover (refused, hanging, slow), wrong chain, fan-out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from eth_account import Account

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.errors import ExecutionReverted, RpcTransportError, UnknownBlock
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil, free_port
from tests.chain.proxy import DelayProxy
from tests.waiting import wait_until

KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.fixture(scope="module")
def wrong_chain_anvil() -> Iterator[Anvil]:
    with Anvil(chain_id=999) as node:
        yield node


@pytest.fixture
async def proxies(anvil: Anvil) -> AsyncIterator[tuple[DelayProxy, DelayProxy]]:
    a = await DelayProxy(anvil.rpc_url).start()
    b = await DelayProxy(anvil.rpc_url).start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_reads_and_typed_errors_pass_through(anvil: Anvil) -> None:
    pool = EndpointPool("dev", 31337, [anvil.rpc_url], block_time=1.0)
    await pool.start()
    try:
        assert pool.endpoints[0].health.state == "ok" and pool.primary is pool.endpoints[0]
        assert await pool.request("eth_chainId", []) == "0x7a69"
        assert (await pool.batch([("eth_chainId", []), ("eth_blockNumber", [])]))[0] == "0x7a69"
        with pytest.raises(UnknownBlock):
            await pool.request("eth_getLogs", [{"blockHash": "0x" + "33" * 32}])
        # a node's answer about the request is not the endpoint's fault: no failover, still ok
        assert pool.endpoints[0].health.state == "ok"
    finally:
        await pool.aclose()


async def test_refused_endpoint_fails_over_immediately(anvil: Anvil) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pool = EndpointPool("dev", 31337, [dead, anvil.rpc_url], block_time=1.0)
    await pool.probe_all()
    await pool.probe_all()
    try:
        assert [e.health.state for e in pool.endpoints] == ["down", "ok"]
        started = time.monotonic()
        assert await pool.request("eth_chainId", []) == "0x7a69"
        assert time.monotonic() - started < 1.0
    finally:
        await pool.aclose()


async def test_hanging_primary_fails_over_within_budget_and_is_readmitted(
    proxies: tuple[DelayProxy, DelayProxy],
) -> None:
    a, b = proxies
    pool = EndpointPool("dev", 31337, [a.url, b.url], block_time=1.0, probe_interval=0.2)
    await pool.start()
    try:
        assert pool.primary is not None
        primary = pool.primary
        hung = a if primary.url == a.url else b
        hung.hang = True
        started = time.monotonic()
        assert await pool.request("eth_chainId", []) == "0x7a69"
        elapsed = time.monotonic() - started
        assert elapsed <= 2.0, elapsed
        assert str(primary.health.state) == "down" and pool.primary is not primary
        # the next read goes straight to the survivor
        started = time.monotonic()
        await pool.request("eth_blockNumber", [])
        assert time.monotonic() - started < 0.5
        hung.hang = False
        await wait_until(lambda: str(primary.health.state) == "ok", within=10.0)
    finally:
        await pool.aclose()


async def test_slow_endpoint_loses_primary(proxies: tuple[DelayProxy, DelayProxy]) -> None:
    slow, fast = proxies
    slow.delay = 0.15
    pool = EndpointPool("dev", 31337, [slow.url, fast.url], block_time=1.0)
    await pool.probe_all()
    await pool.probe_all()
    try:
        assert pool.primary is not None and pool.primary.url == fast.url
        assert all(e.health.state == "ok" for e in pool.endpoints)
        p50 = pool.endpoints[0].health.stats.latency_ms(0.5)
        assert p50 is not None and p50 >= 150.0
        for _ in range(5):
            await pool.request("eth_blockNumber", [])
        assert fast.requests > slow.requests
    finally:
        await pool.aclose()


async def test_wrong_chain_endpoint_is_never_used(anvil: Anvil, wrong_chain_anvil: Anvil) -> None:
    spy = await DelayProxy(wrong_chain_anvil.rpc_url).start()
    pool = EndpointPool("dev", 31337, [spy.url, anvil.rpc_url], block_time=1.0)
    try:
        await pool.probe_all()
        await pool.probe_all()
        probes = spy.requests
        assert pool.endpoints[0].health.state == "wrong_chain"
        assert pool.endpoints[0].health.chain_id == 999
        for _ in range(5):
            assert await pool.request("eth_chainId", []) == "0x7a69"
        assert spy.requests == probes
    finally:
        await pool.aclose()
        await spy.stop()


async def test_all_endpoints_dead_is_one_clear_error() -> None:
    pool = EndpointPool(
        "dev",
        31337,
        [f"http://u:pw@127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"],
        block_time=1.0,
    )
    try:
        await pool.probe_all()
        with pytest.raises(RpcTransportError) as caught:
            await pool.request("eth_chainId", [])
        message = str(caught.value)
        assert "no endpoint with a verified chain id" in message and "pw" not in message
        assert "ConnectError" in message
    finally:
        await pool.aclose()


async def test_verified_endpoint_that_dies_fails_with_its_reason(anvil: Anvil) -> None:
    proxy = await DelayProxy(anvil.rpc_url).start()
    pool = EndpointPool("dev", 31337, [proxy.url], block_time=1.0)
    try:
        await pool.probe_all()
        assert await pool.request("eth_chainId", []) == "0x7a69"
        await proxy.stop()
        with pytest.raises(RpcTransportError) as caught:
            await pool.request("eth_chainId", [])
        assert "all endpoints failed" in str(caught.value)
    finally:
        await pool.aclose()


@pytest.fixture(scope="module")
def mempool_anvil() -> Iterator[Anvil]:
    with Anvil(chain_id=31337, extra_args=["--no-mining"]) as node:
        yield node


async def test_send_raw_fans_out_and_already_known_is_success(mempool_anvil: Anvil) -> None:
    a = await DelayProxy(mempool_anvil.rpc_url).start()
    b = await DelayProxy(mempool_anvil.rpc_url).start()
    pool = EndpointPool("dev", 31337, [a.url, b.url], block_time=1.0)
    try:
        await pool.probe_all()
        await pool.probe_all()
        before = (a.requests, b.requests)
        account = Account.from_key(KEY0)
        signed = account.sign_transaction(
            {
                "to": account.address,
                "value": 1,
                "nonce": 0,
                "gas": 21000,
                "chainId": 31337,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 1,
                "type": 2,
            }
        )
        raw = "0x" + signed.raw_transaction.hex()
        tx_hash = await pool.send_raw_transaction(raw)
        assert tx_hash == "0x" + signed.hash.hex()
        # both endpoints got it (one of them answered "already imported": still a success)
        assert (a.requests - before[0], b.requests - before[1]) == (1, 1)
        assert await pool.send_raw_transaction(raw) == tx_hash
        pending = await pool.request("eth_getTransactionByHash", [tx_hash])
        assert pending is not None and pending["hash"] == tx_hash
        # a real rejection is raised, typed
        bad = account.sign_transaction(
            {
                "to": account.address,
                "value": 10**30,
                "nonce": 1,
                "gas": 21000,
                "chainId": 31337,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 1,
                "type": 2,
            }
        )
        with pytest.raises(Exception) as caught:
            await pool.send_raw_transaction("0x" + bad.raw_transaction.hex())
        assert not isinstance(caught.value, (RpcTransportError, ExecutionReverted))
    finally:
        await pool.aclose()
        await a.stop()
        await b.stop()


async def test_lagging_endpoint_is_scored_against_the_tip_and_not_read() -> None:
    with Anvil(chain_id=31337) as ahead, Anvil(chain_id=31337) as behind:
        ahead_spy = await DelayProxy(ahead.rpc_url).start()
        behind_spy = await DelayProxy(behind.rpc_url).start()
        pool = EndpointPool("dev", 31337, [behind_spy.url, ahead_spy.url], block_time=1.0)
        try:
            async with RpcClient(ahead.rpc_url) as miner:
                await miner.request("anvil_mine", ["0xa"])
            await pool.probe_all()
            states = [e.health.state for e in pool.endpoints]
            assert states == ["lagging", "ok"]
            assert pool.endpoints[0].health.lag_blocks == 10
            assert pool.primary is pool.endpoints[1]
            before = behind_spy.requests
            assert await pool.request("eth_blockNumber", []) == "0xa"
            assert behind_spy.requests == before
        finally:
            await pool.aclose()
            await ahead_spy.stop()
            await behind_spy.stop()
