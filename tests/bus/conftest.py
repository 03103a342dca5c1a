"""Bus fixtures: the same tests run on the memory bus and on real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from mevstack.bus import Bus, open_bus

REDIS_URL = "redis://127.0.0.1:6379/0"

BusFactory = Callable[..., Bus]


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until it holds or the deadline passes (no fixed sleeps)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


async def _drop_namespace(namespace: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    """A random key prefix on the shared Redis, deleted afterwards."""
    namespace = f"mevstack-test-{uuid.uuid4().hex}"
    yield namespace
    await _drop_namespace(namespace)


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Opens buses of one kind; Redis buses of one test share a random namespace."""
    kind: str = request.param
    namespace = f"mevstack-test-{uuid.uuid4().hex}"
    opened: list[Bus] = []

    def factory(**options: Any) -> Bus:
        url = "memory://" if kind == "memory" else REDIS_URL
        bus = open_bus(url, namespace=namespace, **options)
        opened.append(bus)
        return bus

    yield factory
    closers: list[Awaitable[None]] = [bus.aclose() for bus in opened]
    await asyncio.gather(*closers)
    if kind == "redis":
        await _drop_namespace(namespace)
