"""A hostile node: answers nested far deeper than any parser's stack, or not JSON at all.

No real node sends these, so a minimal server speaking the real protocols (HTTP JSON-RPC, and
JSON-RPC over WebSocket) stands in for one.  The client must turn them into its typed errors or a
logged, dropped message, and keep working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from mevstack.chain.errors import RpcTransportError
from mevstack.chain.rpc import RpcClient
from mevstack.chain.ws import WsClient

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
async def deep_http_node() -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(DEEP), DEEP)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def test_a_deeply_nested_http_answer_is_a_transport_error(deep_http_node: str) -> None:
    async with RpcClient(deep_http_node, timeout=5.0) as rpc:
        with pytest.raises(RpcTransportError, match="body is not JSON"):
            await rpc.request("eth_chainId", [])


async def test_a_websocket_node_sending_junk_is_logged_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def node(conn: ServerConnection) -> None:
        async for raw in conn:
            request = orjson.loads(raw)
            await conn.send(DEEP.decode())
            await conn.send("not json at all")
            await conn.send(orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"}))

    caplog.set_level(logging.WARNING, logger="mevstack.chain.ws")
    async with serve(node, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ws = await WsClient(f"ws://127.0.0.1:{port}", timeout=5.0).start()
        try:
            await ws.wait_connected()
            assert await ws.request("eth_chainId", []) == "0x1"
        finally:
            await ws.aclose()
    dropped = [r for r in caplog.records if "not JSON" in r.getMessage()]
    assert len(dropped) == 2
