"""RpcClient against a real anvil: results, batches in order, typed errors, deadlines."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest

from mevstack.chain.errors import (
    ExecutionReverted,
    RpcRateLimited,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
    UnknownBlock,
    decode_revert_reason,
)
from mevstack.chain.redact import redact_url
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil, free_port
from tests.chain.proxy import DelayProxy

REVERTER = "0x00000000000000000000000000000000000000aa"


def _error_string(reason: str) -> bytes:
    raw = reason.encode()
    padded = raw + b"\x00" * (-len(raw) % 32)
    return (
        bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + len(raw).to_bytes(32, "big") + padded
    )


def _reverting_code(data: bytes) -> str:
    """Runtime bytecode that reverts with exactly ``data`` (PUSH32/MSTORE per word, REVERT)."""
    code = b""
    padded = data + b"\x00" * (-len(data) % 32)
    for offset in range(0, len(padded), 32):
        code += (
            b"\x7f" + padded[offset : offset + 32] + b"\x61" + offset.to_bytes(2, "big") + b"\x52"
        )
    code += b"\x61" + len(data).to_bytes(2, "big") + b"\x60\x00\xfd"
    return "0x" + code.hex()


@pytest.fixture
async def client(anvil: Anvil) -> AsyncIterator[RpcClient]:
    rpc = RpcClient(anvil.rpc_url, timeout=5.0)
    yield rpc
    await rpc.aclose()


async def test_request_returns_result(client: RpcClient) -> None:
    assert int(await client.request("eth_chainId", []), 16) == 31337
    block = await client.request("eth_getBlockByNumber", ["0x0", False])
    assert block["number"] == "0x0"


async def test_batch_keeps_call_order_and_returns_item_errors(client: RpcClient) -> None:
    calls: list[tuple[str, list[object]]] = [
        ("eth_chainId", []),
        ("no_suchMethod", []),
        ("eth_getBlockByNumber", ["0x0", False]),
        ("eth_getLogs", [{"blockHash": "0x" + "11" * 32}]),
    ]
    results = await client.batch(calls)
    assert len(results) == 4
    assert results[0] == "0x7a69"
    assert isinstance(results[1], RpcResponseError) and results[1].code == -32601
    assert isinstance(results[2], dict) and results[2]["number"] == "0x0"
    assert isinstance(results[3], UnknownBlock)
    assert await client.batch([]) == []


async def test_batch_of_many_calls(client: RpcClient) -> None:
    results = await client.batch([("eth_getBlockByNumber", ["0x0", False])] * 100)
    assert [r["number"] for r in results if isinstance(r, dict)] == ["0x0"] * 100


async def test_revert_is_typed_with_decoded_reason(client: RpcClient) -> None:
    data = _error_string("pool: insufficient liquidity")
    override = {REVERTER: {"code": _reverting_code(data)}}
    with pytest.raises(ExecutionReverted) as caught:
        await client.request("eth_call", [{"to": REVERTER, "data": "0x"}, "latest", override])
    assert caught.value.data == data
    assert caught.value.reason == "pool: insufficient liquidity"
    assert "insufficient liquidity" in str(caught.value)


async def test_panic_revert(client: RpcClient) -> None:
    data = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    override = {REVERTER: {"code": _reverting_code(data)}}
    with pytest.raises(ExecutionReverted) as caught:
        await client.request("eth_call", [{"to": REVERTER, "data": "0x"}, "latest", override])
    assert caught.value.data == data
    assert caught.value.reason == "panic 0x11"


def test_decode_revert_reason_rejects_garbage() -> None:
    assert decode_revert_reason(b"") is None
    assert decode_revert_reason(bytes.fromhex("08c379a0") + b"\x00" * 10) is None
    assert decode_revert_reason(bytes.fromhex("08c379a0") + (999).to_bytes(32, "big") * 2) is None


async def test_unknown_block_is_typed(client: RpcClient) -> None:
    with pytest.raises(UnknownBlock):
        await client.request("eth_call", [{"to": REVERTER, "data": "0x"}, hex(10**9)])
    with pytest.raises(UnknownBlock):
        await client.request("eth_getLogs", [{"blockHash": "0x" + "22" * 32}])


async def test_refused_connection_is_transport_error() -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}/v3/abcdef0123456789abcdef"
    async with RpcClient(url, timeout=2.0) as rpc:
        with pytest.raises(RpcTransportError) as caught:
            await rpc.request("eth_chainId", [])
    assert not isinstance(caught.value, RpcTimeout)
    assert "secret" not in str(caught.value) and "abcdef0123456789" not in str(caught.value)


async def test_hanging_endpoint_times_out_on_deadline(anvil: Anvil) -> None:
    proxy = await DelayProxy(anvil.rpc_url, hang=True).start()
    try:
        async with RpcClient(proxy.url, timeout=0.3) as rpc:
            started = time.monotonic()
            with pytest.raises(RpcTimeout):
                await rpc.request("eth_chainId", [])
            with pytest.raises(RpcTimeout):
                await rpc.batch([("eth_chainId", [])])
            assert time.monotonic() - started < 1.5
            with pytest.raises(RpcTimeout):
                await rpc.request("eth_chainId", [], time_limit=0.05)
    finally:
        await proxy.stop()


async def test_http_429_is_rate_limited(anvil: Anvil) -> None:
    proxy = await DelayProxy(anvil.rpc_url, status=429).start()
    try:
        async with RpcClient(proxy.url, timeout=2.0) as rpc:
            with pytest.raises(RpcRateLimited):
                await rpc.request("eth_chainId", [])
    finally:
        await proxy.stop()


async def test_answer_without_result_is_transport_error(anvil: Anvil) -> None:
    proxy = await DelayProxy(anvil.rpc_url, status=502).start()
    try:
        async with RpcClient(proxy.url, timeout=2.0) as rpc:
            # body "{}" is JSON but not a JSON-RPC answer
            with pytest.raises(RpcTransportError):
                await rpc.request("eth_chainId", [])
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://user:pw@node.example:8443/rpc", "https://***@node.example:8443/rpc"),
        ("https://mainnet.infura.io/v3/0123456789abcdef0123", "https://mainnet.infura.io/v3/***"),
        ("wss://x.example/ws?apikey=SECRET&x", "wss://x.example/ws?apikey=***&***"),
        ("http://[::1]:8545/", "http://[::1]:8545/"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


async def test_library_logs_never_show_credentials(
    anvil: Anvil, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://alice:hunter2@127.0.0.1:{anvil.port}/v3/0123456789abcdef0123"
    with caplog.at_level(logging.DEBUG):
        async with RpcClient(url, timeout=5.0) as rpc:
            with pytest.raises(RpcTransportError) as caught:
                await rpc.request("eth_chainId", [])  # anvil answers 404 on that path
    assert "HTTP 404" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "HTTP Request" in caplog.text  # httpx did log the request...
    assert "hunter2" not in caplog.text and "0123456789abcdef0123" not in caplog.text
    assert "http://***@127.0.0.1" in caplog.text
