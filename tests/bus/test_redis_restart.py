"""The Redis bus against a Redis of its own that is stopped and restarted under it."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis

from mevstack.bus import BusError, RedisBus
from mevstack.devnet.anvil import free_port
from tests.bus.conftest import wait_until
from tests.redis_server import RedisServer


async def test_reader_and_publisher_survive_a_redis_restart(redis_server: RedisServer) -> None:
    bus = RedisBus(redis_server.url, namespace="restart")
    try:
        sub = await bus.subscribe("survivor", maxsize=100)
        for n in range(3):
            await bus.publish("block.new", "ethereum", {"n": n})
        await wait_until(lambda: sub.depth == 3)

        await asyncio.to_thread(redis_server.stop)
        with pytest.raises(BusError, match="unreachable"):
            await bus.publish("block.new", "ethereum", {"n": "lost"})
        await asyncio.to_thread(redis_server.start)

        # The restarted Redis is empty; the reader restores the sequence as it reconnects, so
        # even a process that never saw seq 1..3 continues from 4.
        def restored() -> bool:
            with Redis(port=redis_server.port) as client:
                raw = client.get("restart:seq")
            return raw is not None and int(raw) >= 3

        await wait_until(restored, within=10)
        newcomer = RedisBus(redis_server.url, namespace="restart")
        try:
            assert (await newcomer.publish("block.new", "ethereum", {"n": 3})).seq == 4
        finally:
            await newcomer.aclose()
        assert (await bus.publish("block.new", "ethereum", {"n": 4})).seq == 5
        await wait_until(lambda: sub.depth == 5, within=10)
        async with asyncio.timeout(5):
            got = [await sub.get() for _ in range(5)]
        assert [e.seq for e in got] == [1, 2, 3, 4, 5]
        assert [e.data["n"] for e in got] == [0, 1, 2, 3, 4]
        assert not sub.overflowed
    finally:
        await bus.aclose()


async def test_unreachable_redis_is_one_clear_error() -> None:
    bus = RedisBus(f"redis://user:pw@127.0.0.1:{free_port()}/0", namespace="nobody", timeout=0.5)
    try:
        with pytest.raises(
            BusError, match=r"redis bus at redis://\*\*\*@127.0.0.1:\d+/0 unreachable"
        ):
            await bus.publish("block.new", None, {})
        with pytest.raises(BusError, match="unreachable"):
            await bus.subscribe("x")
    finally:
        await bus.aclose()
