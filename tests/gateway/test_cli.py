"""`mevstack token create` and `mevstack gateway` as real processes (REST + WS, Redis bus)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from mevstack.api.auth import hash_token
from mevstack.bus import open_bus
from mevstack.devnet.anvil import free_port
from mevstack.events import EventName
from tests.api.conftest import PLAIN, auth
from tests.gateway.conftest import EngineServer, recv_json
from tests.gateway.test_ws import send

MEVSTACK = [sys.executable, "-m", "mevstack.cli"]
# A Redis database of its own: the gateway process uses the default bus namespace.
REDIS_DB_URL = "redis://127.0.0.1:6379/14"


def write_config(tmp_path: Path, **server: object) -> Path:
    lines = [
        "[engine]",
        f'state_dir = "{tmp_path / "state"}"',
        "[database]",
        f'url = "sqlite:///{tmp_path / "gw.db"}"',
        "[bus]",
        f'url = "{server.pop("bus", "memory://")}"',
        "[server]",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in server.items()),
        "public_read = false",
        "[[auth.tokens]]",
        'name = "reader"',
        'scopes = ["read"]',
        f'sha256 = "{hash_token(PLAIN["reader"])}"',
    ]
    path = tmp_path / "mevstack.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEVSTACK, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_token_create_prints_the_token_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    made = run_cli(
        "token", "create", "--config", str(config), "--name", "ops", "--scopes", "read,admin"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("mvt_") and len(made.stdout.splitlines()) == 1
    again = run_cli("token", "create", "--config", str(config), "--name", "ops", "--scopes", "read")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.splitlines()) == 1
    bad = run_cli("token", "create", "--config", str(config), "--name", "x", "--scopes", "root")
    assert bad.returncode != 0 and "unknown scope 'root'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineServer]:
    server = EngineServer(tmp_path, "engine-proc")
    await server.start()
    yield server
    await server.kill()


async def test_gateway_process_serves_rest_and_ws(tmp_path: Path, engine: EngineServer) -> None:
    rest_port, ws_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        bus=REDIS_DB_URL,
        gateway_port=rest_port,
        ws_port=ws_port,
        backends=[engine.url],
        cors_origins=["http://127.0.0.1:5002"],
    )
    redis = Redis.from_url(REDIS_DB_URL)
    await redis.flushdb()
    proc = await asyncio.create_subprocess_exec(
        *MEVSTACK,
        "gateway",
        "--config",
        str(config),
        "--log-level",
        "warning",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    bus = open_bus(REDIS_DB_URL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}") as client:
            async with asyncio.timeout(30):
                while True:
                    assert proc.returncode is None, "the gateway process exited at startup"
                    try:
                        health = await client.get("/health")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            assert health.json()["status"] == "ok"
            opps = await client.get("/api/mev/opportunities", headers=auth("reader"))
            assert opps.status_code == 200 and opps.json()["meta"]["source"] == "engine-proc"
        async with connect(f"ws://127.0.0.1:{ws_port}") as ws:
            await send(ws, {"type": "auth", "token": PLAIN["reader"]})
            assert (await recv_json(ws))["type"] == "authenticated"
            await send(ws, {"type": "subscribe", "events": ["mev.opportunity", "node.status"]})
            assert (await recv_json(ws))["type"] == "subscribed"
            # published by another process's bus: it reaches this gateway's clients with its seq
            sent = await bus.publish(EventName.MEV_OPPORTUNITY, "ethereum", {"id": "x"})
            got = await recv_json(ws, within=10)
            assert (got["event"], got["seq"], got["data"]) == (
                "mev.opportunity",
                sent.seq,
                {"id": "x"},
            )
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(15):
                _, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
        await bus.aclose()
        await redis.flushdb()
        await redis.aclose()
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM)
    assert b"Traceback" not in stderr, stderr.decode()
