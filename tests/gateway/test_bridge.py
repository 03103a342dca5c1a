"""The engine-to-front event bridge over a real socket pair, with a real WebSocket server on the
mirror: same seqs, replay of what the engine's buffer held, and resync after a gap."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect

from mevstack.bus import MemoryBus, ReplayGap
from mevstack.events import Event, EventName
from mevstack.gateway.bridge import LINE_LIMIT, MirrorBus, follow_events, forward_events
from tests.gateway.conftest import StartServer, recv_json
from tests.gateway.test_ws import send, url
from tests.waiting import wait_until


@dataclass
class Bridge:
    engine_bus: MemoryBus
    mirror: MirrorBus
    forward: asyncio.Task[None]
    follow: asyncio.Task[None]
    writer: asyncio.StreamWriter


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    engine_bus = MemoryBus(replay_size=50)
    for i in range(60):  # more than the buffer holds: the mirror starts from the oldest kept
        await engine_bus.publish(EventName.BLOCK_NEW, "ethereum", {"n": i})
    ours, theirs = socket.socketpair()
    _, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
    reader, back = await asyncio.open_unix_connection(sock=theirs, limit=LINE_LIMIT)
    mirror = MirrorBus(replay_size=50)
    forward = asyncio.create_task(forward_events(engine_bus, writer))
    follow = asyncio.create_task(follow_events(reader, mirror))
    yield Bridge(engine_bus, mirror, forward, follow, writer)
    for task in (forward, follow):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    writer.close()
    back.close()
    await mirror.aclose()
    await engine_bus.aclose()


async def test_the_mirror_replays_the_engines_buffer_then_follows_live(
    bridge: Bridge, start_ws: StartServer
) -> None:
    await wait_until(lambda: bridge.mirror._seq == 60, what="buffer forwarded")
    assert [e.seq for e in await bridge.mirror.replay(10)] == list(range(11, 61))
    server = await start_ws(bridge.mirror)
    async with connect(url(server.port)) as ws:
        await send(
            ws, {"type": "subscribe", "events": ["block.new", "trade.included"], "since": 55}
        )
        assert (await recv_json(ws))["type"] == "subscribed"
        assert [(await recv_json(ws))["seq"] for _ in range(5)] == [56, 57, 58, 59, 60]
        live = await bridge.engine_bus.publish(EventName.TRADE_INCLUDED, "base", {"id": "t"})
        got = await recv_json(ws)
        assert (got["seq"], got["event"], got["chain"], got["data"], got["ts"]) == (
            live.seq,
            "trade.included",
            "base",
            {"id": "t"},
            live.ts,
        )
        with pytest.raises(Exception, match="cannot publish"):
            await bridge.mirror.publish(EventName.BLOCK_NEW, None, {})


async def test_a_gap_in_the_bridge_resyncs_websocket_clients(
    bridge: Bridge, start_ws: StartServer
) -> None:
    await wait_until(lambda: bridge.mirror._seq == 60, what="buffer forwarded")
    server = await start_ws(bridge.mirror)
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "subscribe", "events": ["block.new"]})
        assert (await recv_json(ws))["type"] == "subscribed"
        # the engine side's subscription overflowed: seqs 61-63 never cross the bridge
        bridge.mirror.gap(3)
        bridge.mirror.inject(_event(64))
        resync = await recv_json(ws)
        assert resync["type"] == "resync" and "no longer possible" in resync["reason"]
        bridge.mirror.inject(_event(65))
        assert (await recv_json(ws))["seq"] == 65
    with pytest.raises(ReplayGap):
        await bridge.mirror.replay(60)


def _event(seq: int) -> Event:
    return Event(event=EventName.BLOCK_NEW, seq=seq, ts="t", chain="ethereum", data={"n": seq})


async def test_the_front_side_ends_when_the_engine_side_closes(bridge: Bridge) -> None:
    bridge.forward.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await bridge.forward
    assert not bridge.follow.done()
    bridge.writer.close()
    await wait_until(bridge.follow.done, what="the follower saw the end of the bridge")
    assert bridge.follow.exception() is None
