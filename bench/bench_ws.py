"""WebSocket fan-out benchmark: does the engine feel 500 WebSocket clients?

``demo_world`` starts what ``mevstack demo`` starts (five devnet chains at their scaled block
times with noise traders, executors deployed, live mode with auto-execution) and
``running_stack`` runs the stack as ``mevstack up`` does: the engine in this process, the
gateway, WebSocket and dashboard in its child process.  Windows of ``WINDOW_S`` seconds on the
same stack, in the same run, alternating ``ROUNDS`` times between:

* **0 clients**: a client process polls ``GET /api/nodes`` through the gateway every
  ``POLL_INTERVAL_S``, nothing else;
* **500 clients**: the same client process first opens ``CLIENTS`` WebSocket connections
  (spread over loopback addresses, ``PER_ADDRESS`` each, within the default per-address cap),
  each subscribed to every event and reading everything, then polls the same way.

The clients run in a process of their own, at a lower CPU priority (``CLIENT_NICENESS``): they
stand for remote machines, and on this 2-core machine their reading would otherwise compete
with the engine for the CPU as no real client does.
Measured in the engine process: block-to-opportunity latency (a ``newHeads`` observer per chain
stamps heads; a block's latency runs to the first ``mev.opportunity`` of that chain carrying its
number, as in ``bench_engine``), the latency of every JSON-RPC call the engine makes to its
nodes (as its endpoint pool records them), and event-loop lag.  The ratio of each figure with
500 clients to the same figure with none is the result; the target is at most 1.2.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from tests.waiting import wait_until

from bench.bench_engine import _loop_lag, _observe_heads, _percentile, demo_options
from bench.result import Result
from mevstack.devnet.demo import DemoWorld, demo_world
from mevstack.engine.engine import running_stack
from mevstack.events import EVENT_NAMES, EventName

CLIENTS = 500
PER_ADDRESS = 50
WINDOW_S = 40.0
ROUNDS = 3  # windows alternate 0, 500, 0, 500 so that drift in the machine's load cancels out
CLIENT_NICENESS = 5
SETTLE_S = 5.0
POLL_INTERVAL_S = 0.5
_TAIL_S = 2.0
TARGET_RATIO = 1.2


# -- the client process ----------------------------------------------------------------------------


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask what they send)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


class _LeanClient(asyncio.Protocol):
    """A WebSocket client that reads every frame at the cost of parsing its header.

    It stands for a remote client: it reads as fast as the server sends and answers pings, but
    does not charge this machine a full client library's work per message, which no real
    client's machine would add to the server's.
    """

    def __init__(self, host: str, subscribe: bytes) -> None:
        self.host = host
        self.subscribe = subscribe
        self.buffer = bytearray()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handshaken = False
        self.frames = 0
        self.closed: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET / HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.handshaken:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.handshaken = True
            self.transport.write(_masked(0x1, self.subscribe))
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        assert self.transport is not None
        buf, pos = self.buffer, 0
        while len(buf) - pos >= 2:
            opcode, n, head = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + n:
                break
            if opcode == 0x9:  # ping: the server's keepalive wants its pong
                self.transport.write(_masked(0xA, bytes(buf[pos + head : pos + head + n])))
            elif opcode == 0x8:
                self.closed = f"close frame {bytes(buf[pos + head : pos + head + n])!r}"
            elif opcode in (0x1, 0x2):
                self.frames += 1
            pos += head + n
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost: {exc}"))
        elif self.closed is None:
            self.closed = f"connection lost: {exc}"


async def _connect(host: str, port: int, source: str, subscribe: bytes) -> _LeanClient:
    """One client connection; a handshake the busy server drops is retried a few times."""
    loop = asyncio.get_running_loop()
    failure: Exception | None = None
    for attempt in range(5):
        try:
            _, client = await loop.create_connection(
                lambda: _LeanClient(f"{host}:{port}", subscribe),
                host,
                port,
                local_addr=(source, 0),
            )
            async with asyncio.timeout(60):
                await client.opened
            return client
        except (OSError, TimeoutError) as exc:
            failure = exc
            await asyncio.sleep(0.5 * (attempt + 1))  # backoff before the next attempt
    raise RuntimeError(f"client from {source} could not connect: {failure}")


async def _swarm(
    ws_url: str, rest_url: str, clients: int, ready: ProcessEvent, stop: ProcessEvent
) -> dict[str, Any]:
    host, port = ws_url.removeprefix("ws://").rsplit(":", 1)
    subscribe = orjson.dumps({"type": "subscribe", "events": sorted(EVENT_NAMES)})
    sockets = [
        await _connect(host, int(port), f"127.0.0.{2 + i // PER_ADDRESS}", subscribe)
        for i in range(clients)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    ready.set()
    async with httpx.AsyncClient(base_url=rest_url, timeout=10) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer = await http.get("/api/nodes")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if answer.status_code == 200:
                    latencies.append((time.monotonic() - started) * 1000.0)
                else:
                    failures.append(f"HTTP {answer.status_code}")
            await asyncio.sleep(POLL_INTERVAL_S)  # the poller's own cadence
    report = {
        "rest_ms": latencies,
        "received_min": min((c.frames for c in sockets), default=0),
        "received_max": max((c.frames for c in sockets), default=0),
        "closed": [c.closed for c in sockets if c.closed][:5],
        "rest_failures": failures[:5],
    }
    # Closing handshakes one by one would take the server's time after the window; the
    # connections are dropped at once instead, which the server must handle anyway.
    for client in sockets:
        if client.transport is not None:
            client.transport.abort()
    return report


def _swarm_main(
    ws_url: str,
    rest_url: str,
    clients: int,
    ready: ProcessEvent,
    stop: ProcessEvent,
    out: Queue[dict[str, Any]],
) -> None:
    os.nice(CLIENT_NICENESS)
    out.put(asyncio.run(_swarm(ws_url, rest_url, clients, ready, stop)))


# -- the engine process ----------------------------------------------------------------------------


class _Window:
    """What the engine process records between ``open`` and ``close``."""

    def __init__(self) -> None:
        self.opened = 0.0
        self.closed = 0.0
        self.rpc_from = 0
        self.rpc_to = 0
        self.lag_from = 0
        self.lag_to = 0


def _recording(record: Callable[..., None], into: list[tuple[float, float]]) -> Callable[..., None]:
    def record_call(ok: bool, latency_ms: float, error: str | None = None) -> None:
        if ok:
            into.append((time.monotonic(), latency_ms))
        record(ok, latency_ms, error)

    return record_call


async def _measure(world: DemoWorld) -> list[Result]:
    load = os.getloadavg()[0]
    names = [c.spec.name for c in world.chains]
    heads: dict[str, dict[int, float]] = {n: {} for n in names}
    first: dict[str, dict[int, float]] = {n: {} for n in names}
    rpc: list[tuple[float, float]] = []
    lags: list[float] = []
    tasks = [
        asyncio.create_task(_observe_heads(c.anvil.ws_url, heads[c.spec.name]))
        for c in world.chains
    ]
    server = world.settings.server
    ws_url = f"ws://{server.host}:{server.ws_port}"
    rest_url = f"http://{server.host}:{server.gateway_port}"
    context = multiprocessing.get_context("spawn")
    windows: list[tuple[int, _Window]] = []
    swarms: dict[int, list[dict[str, Any]]] = {0: [], CLIENTS: []}
    try:
        async with running_stack(world.settings) as process:
            engine = process.engine
            for runtime in engine.runtimes.values():
                for endpoint in runtime.services.pool.endpoints:
                    health = endpoint.health
                    health.record_call = _recording(health.record_call, rpc)  # type: ignore[method-assign]
            sub = await engine.bus.subscribe(
                "bench", events=[EventName.MEV_OPPORTUNITY], maxsize=1_000_000
            )

            async def collect() -> None:
                async for event in sub:
                    if event.chain in first and event.data["kind"] == "arbitrage":
                        first[event.chain].setdefault(
                            int(event.data["block_number"]), time.monotonic()
                        )

            tasks.append(asyncio.create_task(collect()))
            tasks.append(asyncio.create_task(_loop_lag(lags)))
            await wait_until(
                lambda: all(r.market.builds > 0 for r in engine.runtimes.values()),
                within=300,
                what="every chain's market built",
            )
            await asyncio.sleep(SETTLE_S)  # the measurement windows' own timing
            for clients in (0, CLIENTS) * ROUNDS:
                ready, stop = context.Event(), context.Event()
                out: Queue[dict[str, Any]] = context.Queue()
                swarm = context.Process(
                    target=_swarm_main, args=(ws_url, rest_url, clients, ready, stop, out)
                )
                swarm.start()
                deadline = time.monotonic() + 300
                while not await asyncio.to_thread(ready.wait, 1.0):
                    if not swarm.is_alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"{clients} WebSocket clients did not connect")
                await asyncio.sleep(SETTLE_S)  # let the connection burst pass before measuring
                window = _Window()
                windows.append((clients, window))
                window.opened, window.rpc_from, window.lag_from = (
                    time.monotonic(),
                    len(rpc),
                    len(lags),
                )
                await asyncio.sleep(WINDOW_S)
                window.closed, window.rpc_to, window.lag_to = time.monotonic(), len(rpc), len(lags)
                stop.set()
                swarms[clients].append(await asyncio.to_thread(out.get, True, 60))
                await asyncio.to_thread(swarm.join, 30)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
    figures: dict[int, dict[str, list[float]]] = {
        n: {"block": [], "rpc": [], "rest": [], "lag": []} for n in (0, CLIENTS)
    }
    for clients, window in windows:
        figures[clients]["block"] += [
            (first[name][n] - t) * 1000.0
            for name in names
            for n, t in heads[name].items()
            if window.opened <= t <= window.closed - _TAIL_S
            and n in first[name]
            and first[name][n] >= t
        ]
        figures[clients]["rpc"] += [ms for _, ms in rpc[window.rpc_from : window.rpc_to]]
        figures[clients]["lag"] += lags[window.lag_from : window.lag_to]
    for clients, reports in swarms.items():
        figures[clients]["rest"] = [ms for r in reports for ms in r["rest_ms"]]
    loaded, idle = figures[CLIENTS], figures[0]
    reports = swarms[CLIENTS]
    note = (
        f"{len(names)} chains, {ROUNDS} x 2 alternating {WINDOW_S:.0f} s windows; "
        f"{len(idle['block'])} / {len(loaded['block'])} blocks, {len(idle['rpc'])} / "
        f"{len(loaded['rpc'])} RPC calls (0 / {CLIENTS} clients); each client received "
        f"{min(r['received_min'] for r in reports)}-{max(r['received_max'] for r in reports)} "
        f"frames per window; closed early: {[c for r in reports for c in r['closed']] or 'none'}; "
        f"REST failures: {[f for r in reports for f in r['rest_failures']] or 'none'}; "
        f"load average at the start / end {load:.1f} / {os.getloadavg()[0]:.1f}"
    )
    results: list[Result] = []
    for key, label in (
        ("block", "block->opportunity"),
        ("rpc", "engine JSON-RPC call"),
        ("rest", "REST /api/nodes via gateway"),
        ("lag", "engine event-loop lag"),
    ):
        for q, pct in ((0.5, "p50"), (0.99, "p99")):
            value, baseline = _percentile(loaded[key], q), _percentile(idle[key], q)
            gated = key in ("block", "rpc") and pct == "p99"
            results.append(
                Result(
                    f"{label} {pct} with {CLIENTS} WS clients (baseline: none)",
                    value,
                    "ms",
                    baseline=baseline,
                    target=f"ratio <= {TARGET_RATIO}" if gated else "",
                    met=(value <= TARGET_RATIO * baseline) if gated else None,
                    note=note if key == "block" and pct == "p99" else "",
                )
            )
    return results


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp, demo_world(demo_options(Path(tmp))) as world:
        return asyncio.run(_measure(world))


if __name__ == "__main__":
    print(Result.table(run()))
