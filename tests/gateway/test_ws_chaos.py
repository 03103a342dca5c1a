"""Hostile WebSocket clients against a running ``mevstack demo`` (two devnet chains, live mode):
a connection flood from one address and then from several, giant frames, and a client that
stops reading.  The stack refuses or cuts each of them with a reason, counts them, and the
engine keeps producing opportunities and trades while REST answers promptly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mevstack.devnet.anvil import free_port
from mevstack.events import EVENT_NAMES
from tests.gateway.conftest import recv_json
from tests.gateway.test_ws import send
from tests.ports import free_port_block

pytestmark = pytest.mark.slow

PER_ADDRESS = 20
TOTAL = 50
BUDGET = 64 * 1024


@dataclass
class Demo:
    proc: asyncio.subprocess.Process
    out: Path
    rest: str
    ws: str
    token: str


async def _poll(what: str, within: float, probe: Any) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.2)  # polling a running process's state, bounded by the deadline
    raise AssertionError(f"timed out after {within}s waiting for {what}")


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    base = free_port_block(2)
    engine, gateway, ws, dashboard = (free_port() for _ in range(4))
    out = tmp_path / "demo.out"
    env = {
        **os.environ,
        "MEVSTACK_SERVER_WS_MAX_CONNECTIONS": str(TOTAL),
        "MEVSTACK_SERVER_WS_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "MEVSTACK_SERVER_WS_MAX_BUFFERED_BYTES": str(BUDGET),
    }
    command = [sys.executable, "-m", "mevstack.cli", "demo", "--state-dir", str(tmp_path / "s")]
    command += ["--chains", "ethereum,arbitrum", "--base-port", str(base)]
    command += ["--engine-port", str(engine), "--gateway-port", str(gateway)]
    command += ["--ws-port", str(ws), "--dashboard-port", str(dashboard)]
    sink = out.open("w")
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=sink, stderr=subprocess.STDOUT, env=env
    )
    try:

        async def token() -> str | None:
            found = re.search(r"login token: (\S+)", out.read_text())
            assert proc.returncode is None, out.read_text()[-3000:]
            return None if found is None else found.group(1)

        bearer = await _poll("the demo's login token", 120, token)
        yield Demo(proc, out, f"http://127.0.0.1:{gateway}", f"ws://127.0.0.1:{ws}", bearer)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
            sink.close()
    assert code == 0, out.read_text()[-3000:]
    assert "Traceback" not in out.read_text()


async def _flood(url: str, source: str, attempts: int) -> tuple[list[ClientConnection], list[int]]:
    held: list[ClientConnection] = []
    refused: list[int] = []
    for _ in range(attempts):
        try:
            held.append(await connect(url, local_addr=(source, 0)))
        except InvalidStatus as exc:
            refused.append(exc.response.status_code)
    return held, refused


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


async def test_hostile_websocket_clients_do_not_stop_trading(demo: Demo) -> None:
    headers = {"Authorization": f"Bearer {demo.token}"}
    async with httpx.AsyncClient(base_url=demo.rest, headers=headers, timeout=10) as rest:

        async def listed(path: str) -> list[dict[str, Any]]:
            try:
                answer = await rest.get(path)
            except httpx.TransportError:  # the banner comes before the gateway listens
                return []
            return list(answer.json()["data"]) if answer.status_code == 200 else []

        async def opportunities() -> list[dict[str, Any]]:
            return await listed("/api/mev/opportunities?limit=50")

        async def trades() -> list[dict[str, Any]]:
            return await listed("/api/trades?limit=1000")

        await _poll("opportunities", 90, opportunities)

        # the non-reader: subscribed to everything, tiny receive buffer, never reads
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind(("127.0.0.9", 0))
        raw.connect(("127.0.0.1", int(demo.ws.rsplit(":", 1)[1])))
        stalled = await connect(demo.ws, sock=raw, compression=None)
        await send(stalled, {"type": "subscribe", "events": sorted(EVENT_NAMES)})
        assert (await recv_json(stalled))["type"] == "subscribed"
        stalled.transport.pause_reading()

        # the flood: one address far beyond its cap, then more addresses up to the total
        held, refused = await _flood(demo.ws, "127.0.0.1", 3 * PER_ADDRESS)
        assert (len(held), set(refused), len(refused)) == (PER_ADDRESS, {429}, 2 * PER_ADDRESS)
        for source in ("127.0.0.2", "127.0.0.3"):
            more, refused = await _flood(demo.ws, source, PER_ADDRESS)
            held += more
        assert len(held) == TOTAL - 1 and refused == [503] * (PER_ADDRESS - 9)  # 1: the stalled
        try:
            # giant frames: each is cut at the 64 KiB message limit, the others stay
            for ws in held[:3]:
                await ws.send("x" * (1024 * 1024))
                with pytest.raises(ConnectionClosed) as closed:
                    await recv_json(ws, within=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            for ws in held[3:6]:
                await send(ws, {"type": "ping"})
                assert await recv_json(ws) == {"type": "pong"}
            started = time.monotonic()
            answer = await rest.get("/api/nodes")
            assert answer.status_code == 200 and time.monotonic() - started < 1.0

            async def cut() -> bool:
                text = (await rest.get("/metrics")).text
                return _metric(text, 'mevstack_ws_disconnects_total{result="slow_consumer"}') > 0

            await _poll("the non-reader cut as a slow consumer", 60, cut)
            stalled.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as stopped:
                while True:  # what was on the wire, then the close frame with the reason
                    await asyncio.wait_for(stalled.recv(), 10)
            assert stopped.value.rcvd is not None and stopped.value.rcvd.code == 4008
            assert stopped.value.rcvd.reason.endswith("waiting; reconnect with since")
            metrics = (await rest.get("/metrics")).text
            assert _metric(metrics, "mevstack_ws_dropped_messages_total") > 0
            refused_per_address = 'mevstack_ws_refused_connections_total{result="per_address"}'
            assert _metric(metrics, refused_per_address) == 2 * PER_ADDRESS
            assert _metric(metrics, 'mevstack_ws_refused_connections_total{result="total"}') > 0
        finally:
            for ws in held:
                with contextlib.suppress(ConnectionClosed):
                    await ws.close()

        # afterwards: REST answers promptly and the engine keeps finding and trading
        for _ in range(5):
            started = time.monotonic()
            answer = await rest.get("/api/nodes")
            assert answer.status_code == 200 and time.monotonic() - started < 1.0
        seen = {o["id"] for o in await opportunities()}
        traded = {t["id"] for t in await trades()}

        async def new_opportunity() -> bool:
            return any(o["id"] not in seen for o in await opportunities())

        async def new_trade() -> bool:
            return any(t["id"] not in traded for t in await trades())

        await _poll("a new opportunity after the flood", 60, new_opportunity)
        await _poll("a new trade after the flood", 120, new_trade)
        async with connect(demo.ws) as again:  # the slots were all given back
            await send(again, {"type": "ping"})
            assert await recv_json(again) == {"type": "pong"}
