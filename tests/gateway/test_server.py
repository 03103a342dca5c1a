"""The gateway's process wiring in-process, as ``mevstack up`` uses it: the engine's memory bus."""

from __future__ import annotations

from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from mevstack.api.auth import hash_token
from mevstack.bus import open_bus
from mevstack.config import parse_settings
from mevstack.devnet.anvil import free_port
from mevstack.events import EventName
from mevstack.gateway.server import running_gateway
from tests.api.conftest import PLAIN, auth
from tests.gateway.conftest import EngineServer, recv_json
from tests.gateway.test_ws import send


async def test_running_gateway_on_a_shared_memory_bus(tmp_path: Path) -> None:
    engine = EngineServer(tmp_path, "engine-up")
    await engine.start()
    rest_port, ws_port = free_port(), free_port()
    settings = parse_settings(
        {
            "engine": {"state_dir": str(tmp_path / "state")},
            "database": {"url": f"sqlite:///{tmp_path / 'up.db'}"},
            "server": {
                "gateway_port": rest_port,
                "ws_port": ws_port,
                "backends": [engine.url],
                "public_read": True,
            },
            "auth": {
                "tokens": [{"name": "r", "scopes": ["read"], "sha256": hash_token(PLAIN["reader"])}]
            },
        },
        source="test",
        environ={},
    )
    bus = open_bus("memory://")
    try:
        async with running_gateway(settings, bus=bus):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}") as client:
                assert (await client.get("/health")).json()["status"] == "ok"
                answer = await client.get("/api/mev/opportunities", headers=auth("reader"))
                assert answer.json()["meta"]["source"] == "engine-up"
            async with connect(f"ws://127.0.0.1:{ws_port}") as ws:
                await send(ws, {"type": "subscribe", "events": ["node.status"]})
                assert (await recv_json(ws))["type"] == "subscribed"
                sent = await bus.publish(EventName.NODE_STATUS, "ethereum", {"url": "x"})
                assert (await recv_json(ws))["seq"] == sent.seq
        # the bus that was passed in is still usable: the gateway did not close it
        assert (await bus.publish(EventName.BLOCK_NEW, None, {})).seq == sent.seq + 1
    finally:
        await bus.aclose()
        await engine.kill()
