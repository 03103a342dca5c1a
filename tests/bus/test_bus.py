"""One suite for both buses: ordering, filters, replay, gaps, overflow signalling, lag figures."""

from __future__ import annotations

import asyncio
import re

import pytest
from redis.asyncio import Redis

from mevstack.bus import (
    Bus,
    BusError,
    RedisBus,
    ReplayGap,
    Subscription,
    SubscriptionClosed,
    SubscriptionOverflow,
    open_bus,
)
from mevstack.events import Event, EventName
from mevstack.obs.metrics import sample_value
from tests.bus.conftest import REDIS_URL, BusFactory, wait_until

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def take(sub: Subscription, n: int) -> list[Event]:
    out = []
    async with asyncio.timeout(5):
        for _ in range(n):
            out.append(await sub.get())
    return out


async def test_publish_stamps_increasing_seq_and_delivers_in_order(make_bus: BusFactory) -> None:
    bus = make_bus()
    sub = await bus.subscribe("all")
    published = [
        await bus.publish(EventName.BLOCK_NEW, "ethereum", {"number": n}) for n in range(20)
    ]
    assert [e.seq for e in published] == list(range(1, 21))
    assert all(ISO_MS.match(e.ts) for e in published)
    got = await take(sub, 20)
    assert [e.seq for e in got] == list(range(1, 21))
    assert [e.data["number"] for e in got] == list(range(20))
    assert got[0].to_wire() == {
        "type": "event",
        "event": "block.new",
        "seq": 1,
        "ts": published[0].ts,
        "chain": "ethereum",
        "data": {"number": 0},
    }
    assert await bus.last_seq() == 20


async def test_event_and_chain_filters(make_bus: BusFactory) -> None:
    bus = make_bus()
    opps = await bus.subscribe("opps", events={"mev.opportunity"}, chains={"base"})
    trades = await bus.subscribe("trades", events=[EventName.TRADE_FAILED, "trade.included"])
    await bus.publish("mev.opportunity", "ethereum", {"i": 1})
    await bus.publish("mev.opportunity", "base", {"i": 2})
    await bus.publish("trade.failed", "base", {"i": 3})
    await bus.publish("mev.opportunity", None, {"i": 4})  # chain-less: passes chain filters
    await bus.publish("trade.included", "arbitrum", {"i": 5})
    await bus.publish("block.new", "base", {"i": 6})
    marker = await bus.subscribe("marker")
    await bus.publish("exploit.alert", None, {"i": 7})
    await take(marker, 1)  # everything before it has been fanned out by now
    assert [e.data["i"] for e in await take(opps, opps.depth)] == [2, 4]
    assert [e.data["i"] for e in await take(trades, trades.depth)] == [3, 5]
    assert opps.depth == 0 and trades.depth == 0


async def test_bad_input_is_a_clear_error(make_bus: BusFactory) -> None:
    bus = make_bus()
    with pytest.raises(BusError, match="unknown event name"):
        await bus.publish("block.old", "ethereum", {})
    with pytest.raises(BusError, match=r"unknown event name\(s\): nope"):
        await bus.subscribe("x", events={"nope"})
    with pytest.raises(BusError, match="not JSON-serialisable"):
        await bus.publish("block.new", "ethereum", {"x": object()})
    with pytest.raises(BusError, match="maxsize"):
        await bus.subscribe("x", maxsize=0)
    with pytest.raises(BusError, match=">= 0"):
        await bus.replay(-1)
    assert await bus.last_seq() == 0  # nothing half-published


async def test_replay_and_live_handoff(make_bus: BusFactory) -> None:
    bus = make_bus(replay_size=100)
    assert await bus.replay(0) == []
    for n in range(5):
        await bus.publish("gas.price", "polygon", {"n": n})
    assert [e.seq for e in await bus.replay(0)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in await bus.replay(3)] == [4, 5]
    assert await bus.replay(5) == []
    assert await bus.replay(99) == []
    # A reconnecting consumer: subscribe first, replay up to start_seq, then live.
    sub = await bus.subscribe("ws-client")
    assert sub.start_seq == 5
    await bus.publish("gas.price", "polygon", {"n": 5})
    missed = [e for e in await bus.replay(2) if e.seq <= sub.start_seq]
    live = await take(sub, 1)
    assert [e.seq for e in missed + live] == [3, 4, 5, 6]
    assert (await bus.replay(2))[0].data == {"n": 2}


async def test_replay_gap_when_buffer_no_longer_reaches_back(make_bus: BusFactory) -> None:
    bus = make_bus(replay_size=4)
    for n in range(10):
        await bus.publish("node.status", "optimism", {"n": n})
    assert [e.seq for e in await bus.replay(6)] == [7, 8, 9, 10]
    with pytest.raises(ReplayGap) as info:
        await bus.replay(5)
    assert info.value.oldest == 7 and info.value.since == 5
    assert "no longer possible" in str(info.value)
    with pytest.raises(ReplayGap):
        await bus.replay(0)


async def test_overflow_is_signalled_counted_and_isolated(make_bus: BusFactory) -> None:
    bus = make_bus()
    slow = await bus.subscribe("slow", maxsize=3)
    fast = await bus.subscribe("fast", maxsize=100)
    before = sample_value("mevstack_bus_dropped_events_total") or 0.0
    for n in range(8):
        await bus.publish("trade.submitted", "ethereum", {"n": n})
    await wait_until(lambda: fast.depth == 8)
    assert slow.overflowed and slow.dropped == 5 and slow.depth == 3
    assert sample_value("mevstack_bus_dropped_events_total") == before + 5
    # What was queued is still delivered, in order; then the consumer is told where it stopped.
    assert [e.seq for e in await take(slow, 3)] == [1, 2, 3]
    with pytest.raises(SubscriptionOverflow) as info:
        await slow.get()
    assert info.value.last_seq == 3 and info.value.dropped == 5
    assert "after seq 3" in str(info.value)
    # ...and can recover what it missed from the replay buffer.
    assert [e.seq for e in await bus.replay(info.value.last_seq)] == [4, 5, 6, 7, 8]
    with pytest.raises(SubscriptionClosed):
        await slow.get()
    assert [e.seq for e in await take(fast, 8)] == list(range(1, 9))
    assert not fast.overflowed


async def test_lag_figures(make_bus: BusFactory) -> None:
    bus = make_bus()
    sub = await bus.subscribe("agent", maxsize=50)
    for n in range(10):
        await bus.publish("block.new", "base", {"n": n})
    await wait_until(lambda: sub.depth == 10)
    assert (sample_value("mevstack_bus_subscriber_queue_depth_max") or 0) >= 10
    await take(sub, 4)
    stats = sub.stats()
    assert (stats.depth, stats.high_water, stats.delivered, stats.last_seq) == (6, 10, 4, 4)
    assert stats.lag == 6 and stats.dropped == 0 and not stats.overflowed
    assert stats.maxsize == 50 and stats.name == "agent"
    await take(sub, 6)
    assert sub.stats().lag == 0 and sub.high_water == 10


async def test_async_iteration_ends_on_close(make_bus: BusFactory) -> None:
    bus = make_bus()
    sub = await bus.subscribe("iter")
    for n in range(3):
        await bus.publish("agent.status", None, {"n": n})
    seen: list[int] = []
    async with asyncio.timeout(5):
        async for event in sub:
            seen.append(event.seq)
            if len(seen) == 3:
                await sub.aclose()
    assert seen == [1, 2, 3]


async def test_two_redis_buses_share_one_sequence(redis_namespace: str) -> None:
    """Two bus instances stand for two processes: one sequence, one order, one buffer."""
    a = open_bus(REDIS_URL, namespace=redis_namespace)
    b = open_bus(REDIS_URL, namespace=redis_namespace)
    try:
        sub_a = await a.subscribe("a")
        sub_b = await b.subscribe("b", events={"mev.opportunity"})

        async def burst(bus: Bus, who: str) -> list[int]:
            return [(await bus.publish("mev.opportunity", who, {"n": n})).seq for n in range(25)]

        seqs_a, seqs_b = await asyncio.gather(burst(a, "from-a"), burst(b, "from-b"))
        assert sorted(seqs_a + seqs_b) == list(range(1, 51))
        assert seqs_a == sorted(seqs_a) and seqs_b == sorted(seqs_b)
        for sub in (sub_a, sub_b):
            got = await take(sub, 50)
            assert [e.seq for e in got] == list(range(1, 51))
            assert {e.chain for e in got} == {"from-a", "from-b"}
        assert [e.seq for e in await b.replay(45)] == [46, 47, 48, 49, 50]
        assert await a.last_seq() == await b.last_seq() == 50
    finally:
        await a.aclose()
        await b.aclose()


async def test_open_bus_rejects_unknown_scheme() -> None:
    with pytest.raises(BusError, match="unsupported bus URL 'kafka://\\*\\*\\*@h/'"):
        open_bus("kafka://user:secret@h/")


async def test_concurrent_publishers_get_one_order(make_bus: BusFactory) -> None:
    bus = make_bus()
    assert isinstance(bus, Bus)
    sub = await bus.subscribe("order")

    async def producer(chain: str) -> list[int]:
        return [(await bus.publish("gas.price", chain, {"n": n})).seq for n in range(15)]

    results = await asyncio.gather(*(producer(c) for c in ("ethereum", "base", "optimism")))
    assert sorted(s for r in results for s in r) == list(range(1, 46))
    got = await take(sub, 45)
    assert [e.seq for e in got] == list(range(1, 46))
    for chain in ("ethereum", "base", "optimism"):  # each producer's own order is kept
        assert [e.data["n"] for e in got if e.chain == chain] == list(range(15))


async def test_closing_the_bus_ends_its_subscriptions(make_bus: BusFactory) -> None:
    bus = make_bus()
    sub = await bus.subscribe("closing")
    await bus.aclose()
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    with pytest.raises(BusError, match="closed"):
        await bus.publish("block.new", None, {})


async def test_redis_events_trimmed_before_a_reader_saw_them_are_reported(
    redis_namespace: str,
) -> None:
    """Another process publishes a burst bigger than the buffer in one transaction: the reader
    cannot see the trimmed events, and says so instead of skipping them silently."""
    reader_bus = RedisBus(REDIS_URL, namespace=redis_namespace, replay_size=5)
    writer_bus = RedisBus(REDIS_URL, namespace=redis_namespace, replay_size=5)
    try:
        sub = await reader_bus.subscribe("behind", maxsize=100)
        client = Redis.from_url(REDIS_URL)
        try:
            async with client.pipeline(transaction=True) as pipe:
                payload = b'{"e":"block.new","c":"base","t":"2026-01-01T00:00:00.000Z","d":{}}'
                for _ in range(50):
                    await writer_bus._publish_script(
                        keys=[f"{redis_namespace}:seq", f"{redis_namespace}:events"],
                        args=[0, 5, payload],
                        client=pipe,
                    )
                await pipe.execute()
        finally:
            await client.aclose()
        # 45 were trimmed unseen; the subscription is finished from the gap on, so the 5 that
        # were still there count as missed too (the consumer recovers through replay/resync).
        await wait_until(lambda: sub.dropped == 50)
        assert sub.overflowed and sub.depth == 0
        with pytest.raises(SubscriptionOverflow) as info:
            await sub.get()
        assert info.value.last_seq == 0
        with pytest.raises(ReplayGap) as gap:
            await reader_bus.replay(info.value.last_seq)
        assert gap.value.oldest == 46
    finally:
        await reader_bus.aclose()
        await writer_bus.aclose()
