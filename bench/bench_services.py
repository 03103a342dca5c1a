"""Services benchmarks: the gateway's cached GET against the engine, and WebSocket fan-out.

Real processes: one engine API (uvicorn, SQLite store with 200 opportunities) and one
``mevstack gateway`` (REST + WS, Redis bus); this process is the load generator.

* saturation: closed loop, ``CONCURRENCY`` connections, GET /api/mev/opportunities?limit=20, on
  the engine directly and through the gateway (cached); report the gateway's rate as a ratio of
  the engine's (target >= 50%);
* added latency: an open loop at half the engine's saturation rate on each; latency is measured
  from the *scheduled* send time (no coordinated omission); report the gateway's p50/p99 minus
  the engine's (target: added p99 <= 3 ms);
* WebSocket fan-out: 500 clients subscribed to ``mev.opportunity``; events published on the Redis
  bus from this process; delivery latency from publish to receipt, p99 (target <= 100 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import orjson

from bench.result import Result

CONCURRENCY = 16
PHASE_S = 3.0
WS_CLIENTS = 500
WS_EVENTS = 5
REDIS_URL = "redis://127.0.0.1:6379/15"
TOKEN = "mvt_bench-reader-token"
PATH = "/api/mev/opportunities?limit=20"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    from mevstack.devnet.anvil import free_port

    return free_port()


def _serve_engine(port: int, db_url: str, state_dir: str) -> None:
    """Child process: the engine API over a seeded store (``python -m bench.bench_services``)."""
    import uvicorn

    from mevstack.api.app import create_app
    from mevstack.api.auth import (
        Authenticator,
        SessionSigner,
        TokenRecord,
        hash_token,
        load_or_create_secret,
    )
    from mevstack.api.store_view import StoreView
    from mevstack.store import Store

    store = Store.open(db_url)
    auth = Authenticator(
        config_tokens=[TokenRecord("bench", ("read",), hash_token(TOKEN))],
        signer=SessionSigner(load_or_create_secret(state_dir)),
    )
    app = create_app(view=StoreView(store, "bench-engine"), authenticator=auth)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _seed(db_url: str) -> None:
    from mevstack.store import Store

    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    with Store.open(db_url) as store:
        for i in range(200):
            store.upsert_opportunity(
                {
                    "id": f"opp-{i:05d}",
                    "chain": "ethereum",
                    "chain_id": 1,
                    "kind": "arbitrage",
                    "block_number": 1000 + i,
                    "token": weth,
                    "amount_in": str(10**18),
                    "amount_out": str(10**18 + i),
                    "gross_profit": str(i),
                    "gas_estimate": 150000,
                    "gas_price_wei": "1000000000",
                    "gas_cost_wei": "150000000000000",
                    "net_profit_wei": "0",
                    "path": [],
                    "trigger_tx": None,
                    "status": "detected",
                    "detected_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
                    "expires_at_block": 1002 + i,
                }
            )


async def _wait_http(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(within):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: the server process exited ({proc.returncode})")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _stack(tmp: Path) -> AsyncIterator[tuple[str, str, int]]:
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    _seed(db_url)
    engine_port, gw_port, ws_port = _free_port(), _free_port(), _free_port()
    config = tmp / "mevstack.toml"
    from mevstack.api.auth import hash_token

    config.write_text(
        "\n".join(
            [
                "[engine]",
                f'state_dir = "{tmp / "state"}"',
                "[database]",
                f'url = "{db_url}"',
                "[bus]",
                f'url = "{REDIS_URL}"',
                "[server]",
                f"gateway_port = {gw_port}",
                f"ws_port = {ws_port}",
                f'backends = ["http://127.0.0.1:{engine_port}"]',
                "public_read = false",
                "[[auth.tokens]]",
                'name = "bench"',
                'scopes = ["read"]',
                f'sha256 = "{hash_token(TOKEN)}"',
                "",
            ]
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # the saturation phase is exactly what a rate limiter exists to refuse
        "MEVSTACK_SERVER_RATE_LIMIT_PER_TOKEN": "1000000000",
        "MEVSTACK_SERVER_RATE_LIMIT_PER_ADDRESS": "1000000000",
    }
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [
                sys.executable,
                "-m",
                "bench.bench_services",
                "engine",
                str(engine_port),
                db_url,
                str(tmp / "state"),
            ],
            env=env,
        ),
        subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [
                sys.executable,
                "-m",
                "mevstack.cli",
                "gateway",
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            env=env,
        ),
    ]
    try:
        await _wait_http(f"http://127.0.0.1:{engine_port}", procs[0])
        await _wait_http(f"http://127.0.0.1:{gw_port}", procs[1])
        yield f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{gw_port}", ws_port
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"},
        limits=httpx.Limits(
            max_connections=CONCURRENCY * 4, max_keepalive_connections=CONCURRENCY * 4
        ),
        timeout=10,
    )


async def _saturation(base: str) -> float:
    async with _client() as client:
        for _ in range(50):  # warm the pool and the gateway's cache
            (await client.get(base + PATH)).raise_for_status()
        done = 0
        deadline = time.perf_counter() + PHASE_S

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                answer = await client.get(base + PATH)
                answer.raise_for_status()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - started)


async def _open_loop(base: str, rate: float) -> list[float]:
    """Latencies (s) of requests sent at a fixed rate, measured from their scheduled time."""
    latencies: list[float] = []
    async with _client() as client:
        for _ in range(20):
            (await client.get(base + PATH)).raise_for_status()
        total = int(rate * PHASE_S)
        start = time.perf_counter() + 0.05

        async def one(scheduled: float) -> None:
            answer = await client.get(base + PATH)
            answer.raise_for_status()
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ws_fanout(ws_port: int) -> list[float]:
    from websockets.asyncio.client import connect

    from mevstack.bus import open_bus
    from mevstack.events import EventName

    bus = open_bus(REDIS_URL)
    delays: list[float] = []
    arrived: dict[int, int] = {}
    got_all = asyncio.Event()

    async def client(ready: Callable[[], None]) -> None:
        async with connect(f"ws://127.0.0.1:{ws_port}", open_timeout=30) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": TOKEN}).decode())
            await ws.recv()
            await ws.send(
                orjson.dumps({"type": "subscribe", "events": ["mev.opportunity"]}).decode()
            )
            await ws.recv()
            ready()
            for _ in range(WS_EVENTS):
                doc = orjson.loads(await ws.recv())
                now = time.time()
                delays.append(now - doc["data"]["sent_at"])
                arrived[doc["seq"]] = arrived.get(doc["seq"], 0) + 1
                if arrived[doc["seq"]] == WS_CLIENTS:
                    got_all.set()

    connected = 0
    all_ready = asyncio.Event()

    def ready() -> None:
        nonlocal connected
        connected += 1
        if connected == WS_CLIENTS:
            all_ready.set()

    tasks = []
    for _ in range(WS_CLIENTS):
        tasks.append(asyncio.create_task(client(ready)))
    try:
        async with asyncio.timeout(120):
            await all_ready.wait()
            for _ in range(WS_EVENTS):
                got_all.clear()
                await bus.publish(EventName.MEV_OPPORTUNITY, "ethereum", {"sent_at": time.time()})
                await got_all.wait()
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await bus.aclose()
    return delays


async def _run() -> list[Result]:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mevstack-bench-services-") as tmp:
        async with _stack(Path(tmp)) as (engine, gateway, ws_port):
            engine_rate = await _saturation(engine)
            gateway_rate = await _saturation(gateway)
            ratio = gateway_rate / engine_rate
            results.append(
                Result(
                    "services: gateway cached GET saturation",
                    gateway_rate,
                    "req/s",
                    baseline=engine_rate,
                    target="ratio >= 0.5",
                    met=ratio >= 0.5,
                    note=f"closed loop, {CONCURRENCY} connections; baseline = engine direct",
                )
            )
            rate = engine_rate / 2
            direct = await _open_loop(engine, rate)
            through = await _open_loop(gateway, rate)
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                added_ms = (_pct(through, q) - _pct(direct, q)) * 1000
                results.append(
                    Result(
                        f"services: gateway added latency {label}",
                        added_ms,
                        "ms",
                        baseline=_pct(direct, q) * 1000,
                        target="<= 3 ms" if label == "p99" else "",
                        met=(added_ms <= 3.0) if label == "p99" else None,
                        note=f"open loop at {rate:.0f} req/s (half the engine's saturation); "
                        "baseline = engine direct latency",
                    )
                )
            delays = await _ws_fanout(ws_port)
            p99 = _pct(delays, 0.99) * 1000
            results.append(
                Result(
                    f"services: WS fan-out p99 ({WS_CLIENTS} clients)",
                    p99,
                    "ms",
                    target="<= 100 ms",
                    met=p99 <= 100,
                    note=f"{WS_EVENTS} events on the Redis bus, publish -> receipt; "
                    f"p50 {_pct(delays, 0.5) * 1000:.1f} ms",
                )
            )
    await redis.flushdb()
    await redis.aclose()
    return results


def run() -> list[Result]:
    return asyncio.run(_run())


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "engine":
        _serve_engine(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        print(Result.table(run()))
