"""A hostile node: answers nested far deeper than any parser's stack, or not JSON at all.

No real node sends these, so a minimal server speaking the real protocols (HTTP JSON-RPC, and
JSON-RPC over WebSocket) stands in for one.  The client must turn them into its typed errors or a
logged, dropped message, and keep working.
"""

from __future__ import annotations

import logging

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from mevstack.chain.errors import RpcTransportError
from mevstack.chain.rpc import RpcClient
from mevstack.chain.ws import WsClient
from tests.hostile import DEEP


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
