"""`mevstack up` as a real process on the devnet: the gateway answers from the engine's live
state, the WebSocket streams the engine's events, and SIGTERM shuts it all down cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from mevstack.api.view import NotFound
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.deploy import ChainDeployment
from mevstack.engine.engine import running_engine
from tests.engine.world import chain_entry, engine_settings, write_config


async def test_up_serves_gateway_and_websocket_from_the_engine_and_stops_on_sigterm(
    devnet_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = devnet_chain
    engine_port, gateway_port, ws_port, dash_port = (free_port() for _ in range(4))
    config = write_config(
        tmp_path / "mevstack.toml",
        [chain_entry("ethereum", node.rpc_url, dep)],
        tmp_path,
        server={
            "engine_port": engine_port,
            "gateway_port": gateway_port,
            "ws_port": ws_port,
            "dashboard_port": dash_port,
            "backends": [f"http://127.0.0.1:{engine_port}"],
        },
    )
    log = (tmp_path / "up.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mevstack.cli",
        "up",
        "--config",
        str(config),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}") as client:

            async def answer(path: str) -> httpx.Response | None:
                try:
                    response = await client.get(path, timeout=2)
                except httpx.TransportError:
                    return None
                return response if response.status_code == 200 else None

            opportunities: list[dict[str, object]] = []

            async def poll() -> None:
                while proc.returncode is None:
                    got = await answer("/api/mev/opportunities")
                    if got is not None and got.json()["data"]:
                        opportunities.extend(got.json()["data"])
                        return
                    await asyncio.sleep(0.1)  # polling interval of an HTTP endpoint

            async with asyncio.timeout(60):
                await poll()
            assert proc.returncode is None, (tmp_path / "up.log").read_text()
            assert all(o["chain"] == "ethereum" for o in opportunities)
            nodes = await answer("/api/nodes")
            assert nodes is not None
            assert [n["state"] for n in nodes.json()["data"]] == ["ok"]
            gas = await answer("/api/gas")
            assert gas is not None and gas.json()["data"][0]["chain"] == "ethereum"
            agents = await answer("/api/agents")
            assert agents is not None
            assert [a["id"] for a in agents.json()["data"]] == ["arbitrage:ethereum"]

        async with httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{dash_port}/", timeout=5)
            assert page.status_code == 200 and "<html" in page.text.lower()

        async with websockets.connect(f"ws://127.0.0.1:{ws_port}") as ws:
            await ws.send(json.dumps({"type": "subscribe", "events": ["node.status"]}))
            frames: list[dict[str, object]] = []

            async def read() -> None:
                while not any(f.get("type") == "event" for f in frames):
                    frames.append(json.loads(await ws.recv()))

            async with asyncio.timeout(15):
                await read()
            event = next(f for f in frames if f.get("type") == "event")
            assert event["event"] == "node.status" and event["chain"] == "ethereum"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
            log.close()
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert f"dashboard on http://127.0.0.1:{dash_port}/" in output


async def test_standby_engine_serves_its_api_with_its_role(
    devnet_chain: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = devnet_chain
    settings = engine_settings(tmp_path, chain_entry("ethereum", node.rpc_url, dep))
    port = free_port()
    async with (
        running_engine(settings, port=port, standby=True) as process,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        health = (await client.get("/health")).json()
        assert health["status"] == "ok" and health["role"] == "standby"
        state = (await client.get("/api/trading/state")).json()
        assert state["data"]["mode"] == "observe"
        answer = await client.post(
            "/api/mev/opportunities/x/execute", headers={"Authorization": "Bearer nope"}
        )
        assert answer.status_code == 401  # refused before reaching the (unwired) execute path
        agents = (await client.get("/api/agents")).json()["data"]
        assert [a["id"] for a in agents] == ["arbitrage:ethereum"]
        with pytest.raises(NotFound):
            await process.engine.set_agent_running("arbitrage:nowhere", False)
