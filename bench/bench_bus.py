"""Bus publish cost: microseconds per publish on the memory bus and on Redis (127.0.0.1:6379).

Each publish goes to one subscriber (events are drained as they arrive, so no overflow).  The
baseline for the memory bus is a bare ``asyncio.Queue.put_nowait`` of the same dict: the cost of
stamping, filtering and the bounded-queue bookkeeping shows as the ratio.  Redis has no
baseline here (its figure is one round trip of a Lua INCR+XADD).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench.result import Result
from mevstack.bus import open_bus

N_MEMORY = 20_000
N_REDIS = 2_000


async def _per_publish_us(url: str, n: int) -> float:
    namespace = f"mevstack-bench-{uuid.uuid4().hex}"
    bus = open_bus(url, namespace=namespace, replay_size=n + 10)
    sub = await bus.subscribe("bench", maxsize=n + 10)
    data = {"number": 1, "hash": "0x" + "ab" * 32}
    start = time.perf_counter()
    for _ in range(n):
        await bus.publish("block.new", "ethereum", data)
    elapsed = time.perf_counter() - start
    async with asyncio.timeout(30):
        while sub.delivered < n:
            await sub.get()
    await bus.aclose()
    if url.startswith("redis"):
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        await client.delete(f"{namespace}:seq", f"{namespace}:events")
        await client.aclose()
    return elapsed / n * 1e6


async def _queue_baseline_us(n: int) -> float:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=n + 10)
    data = {"number": 1, "hash": "0x" + "ab" * 32}
    start = time.perf_counter()
    for _ in range(n):
        queue.put_nowait(dict(data))
    return (time.perf_counter() - start) / n * 1e6


async def _run() -> list[Result]:
    memory = await _per_publish_us("memory://", N_MEMORY)
    baseline = await _queue_baseline_us(N_MEMORY)
    redis = await _per_publish_us("redis://127.0.0.1:6379/0", N_REDIS)
    return [
        Result(
            "bus publish, memory (1 subscriber)",
            memory,
            "us",
            baseline=baseline,
            note="baseline: bare asyncio.Queue.put_nowait",
        ),
        Result(
            "bus publish, redis (1 subscriber)",
            redis,
            "us",
            note="Lua INCR+XADD round trip to 127.0.0.1:6379",
        ),
    ]


def run() -> list[Result]:
    return asyncio.run(_run())
