"""The execution lease on a real Redis: exclusivity, takeover after a stall, fencing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from eth_account import Account
from redis.asyncio import Redis

from mevstack.execution.lease import LeaseLost, RedisLease
from mevstack.execution.routes import Signer
from mevstack.execution.trading_state import SigningGate
from tests.waiting import wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL_MS = 400


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_two_contenders_never_both_hold_and_a_stalled_holder_is_fenced(redis: Redis) -> None:
    name = f"mevstack-test-lease:{uuid.uuid4().hex}"
    resolved: list[tuple[str, int]] = []

    def resolver(who: str) -> Callable[[int], Awaitable[None]]:
        async def resolve(epoch: int) -> None:
            resolved.append((who, epoch))

        return resolve

    a = RedisLease(redis, name, "engine-a", ttl_ms=TTL_MS, on_acquire=resolver("a"))
    b = RedisLease(redis, name, "engine-b", ttl_ms=TTL_MS, on_acquire=resolver("b"))
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    both_seen = 0
    try:
        await wait_until(lambda: a.held or b.held, within=5, what="a lease holder")
        holder, other = (a, b) if a.held else (b, a)
        first_epoch = await holder.check()
        with pytest.raises(LeaseLost):
            await other.check()
        # the callback ran before the holder became ready, with its epoch
        assert resolved == [(holder.holder[-1], first_epoch)]

        async def watch() -> None:
            nonlocal both_seen
            while True:
                if a.held and b.held:
                    both_seen += 1
                await asyncio.sleep(0.005)  # sampling the two flags

        watcher = asyncio.create_task(watch())
        # a duration is what is tested here: over three TTLs the holder keeps it by renewing
        loop = asyncio.get_running_loop()
        until = loop.time() + 3 * TTL_MS / 1000
        await wait_until(lambda: loop.time() >= until, within=5, what="three TTLs")
        assert holder.held and not other.held
        assert await holder.check() == first_epoch

        holder.pause_renewal()  # a stalled holder (GC pause, network partition)
        await wait_until(lambda: other.held, within=5, what="the standby taking over")
        second_epoch = await other.check()
        assert second_epoch > first_epoch
        assert resolved[-1] == (other.holder[-1], second_epoch)
        with pytest.raises(LeaseLost, match="stale"):
            await holder.check()  # fencing: the old holder may no longer send
        assert not holder.held
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert both_seen == 0
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await redis.delete(f"{name}:holder", f"{name}:epoch")


async def test_release_hands_over_without_waiting_for_the_ttl(redis: Redis) -> None:
    name = f"mevstack-test-lease:{uuid.uuid4().hex}"
    a = RedisLease(redis, name, "a", ttl_ms=60_000)
    b = RedisLease(redis, name, "b", ttl_ms=60_000)
    try:
        assert await a.try_acquire() == 1
        assert await b.try_acquire() is None
        await a.release()
        assert await b.try_acquire() == 2
    finally:
        await redis.delete(f"{name}:holder", f"{name}:epoch")


async def test_a_killed_holder_is_replaced_and_its_signer_is_fenced(redis: Redis) -> None:
    name = f"mevstack-test-lease:{uuid.uuid4().hex}"
    a = RedisLease(redis, name, "engine-a", ttl_ms=TTL_MS)
    b = RedisLease(redis, name, "engine-b", ttl_ms=TTL_MS)
    task_a = asyncio.create_task(a.run())
    task_b: asyncio.Task[None] | None = None
    signer = Signer(Account.create(), SigningGate(), a)
    tx = {
        "type": 2,
        "chainId": 1,
        "nonce": 0,
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": 0,
        "gas": 21_000,
        "maxFeePerGas": 1,
        "maxPriorityFeePerGas": 1,
    }
    try:
        await wait_until(lambda: a.held, within=5, what="engine-a holding the lease")
        await signer.sign(tx)  # the holder may sign
        task_b = asyncio.create_task(b.run())
        task_a.cancel()  # engine-a dies without releasing
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        await wait_until(lambda: b.held, within=5, what="engine-b taking over after the TTL")
        assert await b.check() == 2
        with pytest.raises(LeaseLost):
            await signer.sign(tx)  # a zombie engine-a can no longer sign
        assert signer.signed == 1
    finally:
        for task in (task_a, task_b):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await redis.delete(f"{name}:holder", f"{name}:epoch")


async def test_an_epoch_lost_with_redis_data_never_goes_below_the_trades_floor(
    redis: Redis,
) -> None:
    """A Redis restarted without its data forgets the epoch; the new holder's epoch is still
    above the highest one already written on a trade, and a failing floor is retried."""
    name = f"mevstack-test-lease:{uuid.uuid4().hex}"
    floors = [RuntimeError("store unreachable"), 41]

    async def floor() -> int:
        answer = floors.pop(0) if len(floors) > 1 else floors[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    lease = RedisLease(redis, name, "engine-a", ttl_ms=TTL_MS, epoch_floor=floor)
    task = asyncio.create_task(lease.run())
    try:
        await wait_until(lambda: lease.held, within=5, what="the lease after a failed floor read")
        assert await lease.check() == 42
        await lease.release()
        await redis.delete(f"{name}:epoch")  # what an empty Redis coming back looks like
        await wait_until(lambda: lease.held, within=5, what="the lease taken again")
        assert await lease.check() == 42
        assert int(await redis.get(f"{name}:epoch")) == 42
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.delete(f"{name}:holder", f"{name}:epoch")
