"""The WebSocket stream against a real server on a free port, on the memory bus and real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mevstack.bus import Bus
from mevstack.events import Event, EventName
from mevstack.gateway.ws import (
    DROPPED,
    REFUSED,
    SESSION_EXPIRED_CLOSE_CODE,
    SLOW_CLIENT_CLOSE_CODE,
    Client,
    _Out,
)
from tests.api.conftest import PLAIN
from tests.gateway.conftest import StartServer, recv_json
from tests.waiting import wait_until


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}"


async def send(ws: Any, doc: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(doc).decode())


async def test_subscribe_filter_unsubscribe_ping_and_garbage(
    bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(bus)
    async with connect(url(server.port)) as ws:
        await send(
            ws,
            {
                "type": "subscribe",
                "events": ["mev.opportunity", "node.status"],
                "chains": ["ethereum"],
            },
        )
        assert await recv_json(ws) == {
            "type": "subscribed",
            "events": ["mev.opportunity", "node.status"],
        }
        await bus.publish(EventName.MEV_OPPORTUNITY, "polygon", {"id": "skip-me"})
        await bus.publish(EventName.GAS_PRICE, "ethereum", {"n": 0})
        sent = await bus.publish(EventName.MEV_OPPORTUNITY, "ethereum", {"id": "a"})
        got = await recv_json(ws)
        assert got == {
            "type": "event",
            "event": "mev.opportunity",
            "seq": sent.seq,
            "ts": sent.ts,
            "chain": "ethereum",
            "data": {"id": "a"},
        }
        for garbage in (
            "not json",
            "[1,2]",
            '{"type": "dance"}',
            '{"type": "subscribe", "events": ["no.such"]}',
            '{"type": "subscribe", "events": "mev.opportunity"}',
            '{"type": "subscribe", "events": ["block.new"], "since": -1}',
        ):
            await ws.send(garbage)
            answer = await recv_json(ws)
            assert answer["type"] == "error" and answer["error"], garbage
        await ws.send(b"\x00\x01")
        assert (await recv_json(ws))["type"] == "error"
        await send(ws, {"type": "ping"})
        assert await recv_json(ws) == {"type": "pong"}
        await send(ws, {"type": "unsubscribe", "events": ["mev.opportunity"]})
        assert (await recv_json(ws))["type"] == "unsubscribed"
        await bus.publish(EventName.MEV_OPPORTUNITY, "ethereum", {"id": "gone"})
        status = await bus.publish(EventName.NODE_STATUS, "ethereum", {"url": "u"})
        assert (await recv_json(ws))["seq"] == status.seq  # the opportunity was not delivered


async def test_since_replays_without_gap_or_duplicate_then_resyncs(
    bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(bus)
    first = [await bus.publish(EventName.TRADE_INCLUDED, "ethereum", {"i": i}) for i in range(5)]
    await wait_until(lambda: server.hub_seq == first[-1].seq, what="hub caught up")
    async with connect(url(server.port)) as ws:
        since = first[1].seq
        await send(ws, {"type": "subscribe", "events": ["trade.included"], "since": since})
        assert (await recv_json(ws))["type"] == "subscribed"
        live = await bus.publish(EventName.TRADE_INCLUDED, "ethereum", {"i": 5})
        seqs = [(await recv_json(ws))["seq"] for _ in range(4)]
        assert seqs == [first[2].seq, first[3].seq, first[4].seq, live.seq]
    # the replay buffer holds 50 events: asking for older ones is a resync, not a silent gap
    for i in range(60):
        await bus.publish(EventName.BLOCK_NEW, "ethereum", {"i": i})
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "subscribe", "events": ["trade.included"], "since": 1})
        assert (await recv_json(ws))["type"] == "subscribed"
        resync = await recv_json(ws)
        assert resync["type"] == "resync" and "no longer possible" in resync["reason"]


async def test_slow_client_is_cut_and_never_slows_others(
    memory_bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(memory_bus, client_queue=20)
    blob = "x" * 32_000
    # no compression, so the padding really fills the socket buffers of the client that stalls
    async with (
        connect(url(server.port), compression=None) as fast,
        connect(url(server.port), compression=None, max_queue=1) as slow,
    ):
        for ws in (fast, slow):
            await send(ws, {"type": "subscribe", "events": ["trade.submitted"]})
            assert (await recv_json(ws))["type"] == "subscribed"
        received: list[int] = []

        async def read_fast() -> None:
            while True:
                received.append((await recv_json(fast))["seq"])

        reader = asyncio.create_task(read_fast())
        published: list[int] = []
        for i in range(2000):  # the slow client never reads; its buffers fill, then its queue
            published.append(
                (
                    await memory_bus.publish(
                        EventName.TRADE_SUBMITTED, "ethereum", {"i": i, "pad": blob}
                    )
                ).seq
            )
            await asyncio.sleep(0)
            if slow.close_code is not None or len(server.clients) == 1:
                break
        await wait_until(lambda: any(c.closed for c in server.clients), within=10, what="cut")
        await wait_until(lambda: received[-1:] == published[-1:], within=10, what="fast got all")
        reader.cancel()
        assert received == published
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # the cut client reads what was on the wire, then the close reason
                await slow.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == SLOW_CLIENT_CLOSE_CODE
        assert "slow consumer" in closed.value.rcvd.reason
        await wait_until(lambda: len(server.clients) == 1, within=5, what="slow client gone")


class _Transport:
    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class _Connection:
    transport = _Transport()


def test_gas_and_node_status_coalesce_but_trades_never() -> None:
    class _Server:
        def spawn(self, coro: Any) -> None:
            coro.close()

    client = Client(_Server(), _Connection(), maxsize=10)  # type: ignore[arg-type]
    client.filters = {"gas.price": None, "node.status": None, "trade.failed": None}

    def ev(seq: int, name: str, chain: str, **data: Any) -> Event:
        return Event(event=EventName(name), seq=seq, ts="t", chain=chain, data=data)

    for seq in range(1, 6):
        client.offer(ev(seq, "gas.price", "ethereum", base=seq))
    client.offer(ev(6, "gas.price", "polygon", base=6))
    client.offer(ev(7, "node.status", "ethereum", url="a"))
    client.offer(ev(8, "node.status", "ethereum", url="b"))
    client.offer(ev(9, "node.status", "ethereum", url="a"))
    for seq in range(10, 13):
        client.offer(ev(seq, "trade.failed", "ethereum"))
    assert len(client.queue) == 7
    latest = client.latest[("gas.price", "ethereum", None)].event
    assert latest is not None and latest.seq == 5
    latest = client.latest[("node.status", "ethereum", "a")].event
    assert latest is not None and latest.seq == 9
    queued = [i.event.seq for i in client.queue if isinstance(i, _Out) and i.event is not None]
    assert queued == [10, 11, 12]
    frames = [*client.latest.values(), *(i for i in client.queue if isinstance(i, _Out))]
    assert client.queued_bytes == sum(len(o.frame) for o in frames)  # replaced ones not counted
    for seq in range(13, 17):
        client.offer(ev(seq, "trade.failed", "ethereum"))
    assert client.closed  # the 11th waiting message does not fit: cut, never dropped silently


def test_a_client_is_cut_on_bytes_waiting_before_its_queue_fills() -> None:
    class _Server:
        def spawn(self, coro: Any) -> None:
            coro.close()

    client = Client(_Server(), _Connection(), maxsize=1000, max_bytes=10_000)  # type: ignore[arg-type]
    client.filters = {"trade.included": None}
    dropped = DROPPED._value.get()
    for seq in range(1, 20):
        event = Event(
            event=EventName.TRADE_INCLUDED,
            seq=seq,
            ts="t",
            chain="ethereum",
            data={"p": "x" * 1000},
        )
        client.offer(event)
        if client.closed:
            break
    assert client.closed and seq == 10  # the tenth ~1.1 kB frame passes 10,000 bytes
    assert DROPPED._value.get() - dropped == 10  # the nine queued and the one that did not fit


async def test_origin_checked_when_present(memory_bus: Bus, start_ws: StartServer) -> None:
    server = await start_ws(memory_bus)
    async with connect(url(server.port), origin="http://127.0.0.1:5002") as ws:  # type: ignore[arg-type]
        await send(ws, {"type": "ping"})
        assert await recv_json(ws) == {"type": "pong"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url(server.port), origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_auth_required_without_public_read(memory_bus: Bus, start_ws: StartServer) -> None:
    server = await start_ws(memory_bus, public_read=False)
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "subscribe", "events": ["block.new"]})
        assert "authentication required" in (await recv_json(ws))["error"]
        await send(ws, {"type": "auth", "token": "mvt_wrong-token"})
        refused = await recv_json(ws)
        assert refused["type"] == "error" and "mvt_wrong-token" not in refused["error"]
        session, _ = server.authenticator.signer.issue(
            await server.authenticator.api_token(PLAIN["reader"])
        )
        await send(ws, {"type": "auth", "token": session})
        assert (await recv_json(ws))["type"] == "authenticated"
        await send(ws, {"type": "subscribe", "events": ["block.new"]})
        assert (await recv_json(ws))["type"] == "subscribed"


async def test_auth_in_the_handshake_header(memory_bus: Bus, start_ws: StartServer) -> None:
    server = await start_ws(memory_bus, public_read=False)
    headers = {"Authorization": f"Bearer {PLAIN['reader']}"}
    async with connect(url(server.port), additional_headers=headers) as ws:
        assert (await recv_json(ws))["type"] == "authenticated"
        await send(ws, {"type": "subscribe", "events": ["block.new"]})
        assert (await recv_json(ws))["type"] == "subscribed"


async def test_server_sends_heartbeat_pings(memory_bus: Bus, start_ws: StartServer) -> None:
    server = await start_ws(memory_bus, ping_interval=0.1, ping_timeout=2.0)
    async with connect(url(server.port), ping_interval=None):
        await wait_until(lambda: len(server.clients) == 1, what="connected")
        (client,) = server.clients
        # latency is measured from the server's own ping frame and the client's pong
        await wait_until(lambda: client.ws.latency > 0, within=3, what="server ping answered")


async def test_since_ahead_of_the_stream_resyncs_then_follows_live(
    bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(bus)
    first = [await bus.publish(EventName.TRADE_INCLUDED, "ethereum", {"i": i}) for i in range(3)]
    await wait_until(lambda: server.hub_seq == first[-1].seq, what="hub caught up")
    # a client of a previous run of the stream, whose seq has started again from 1 since
    async with connect(url(server.port)) as ws:
        since = first[-1].seq + 1000
        await send(ws, {"type": "subscribe", "events": ["trade.included"], "since": since})
        assert (await recv_json(ws))["type"] == "subscribed"
        resync = await recv_json(ws)
        assert resync["type"] == "resync" and f"since seq {since} is ahead" in resync["reason"]
        live = await bus.publish(EventName.TRADE_INCLUDED, "ethereum", {"i": 3})
        got = await recv_json(ws)
        assert (got["type"], got["seq"], got["data"]) == ("event", live.seq, {"i": 3})
    # since equal to the current seq is an up-to-date client: no resync, just live events
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "subscribe", "events": ["trade.included"], "since": live.seq})
        assert (await recv_json(ws))["type"] == "subscribed"
        nxt = await bus.publish(EventName.TRADE_INCLUDED, "ethereum", {"i": 4})
        assert (await recv_json(ws))["seq"] == nxt.seq


async def test_an_expiring_session_ends_the_stream(
    memory_bus: Bus, start_ws: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_ws(memory_bus)  # even with public_read the session's stream ends
    reader = await server.authenticator.api_token(PLAIN["reader"])
    session, expires_at = server.authenticator.signer.issue(reader, ttl_s=1)
    frames: list[dict[str, Any]] = []
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "auth", "token": session})
        assert (await recv_json(ws))["type"] == "authenticated"
        await send(ws, {"type": "subscribe", "events": ["block.new"]})
        assert (await recv_json(ws))["type"] == "subscribed"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(await recv_json(ws, within=5.0))
    assert time.time() >= expires_at - 0.05  # not before the expiry
    assert frames == [{"type": "error", "error": "session expired"}]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == SESSION_EXPIRED_CLOSE_CODE == 4401
    assert session not in closed.value.rcvd.reason and session not in caplog.text
    await wait_until(lambda: not server.clients, what="expired client gone")


async def test_an_api_token_stream_stays_open(memory_bus: Bus, start_ws: StartServer) -> None:
    server = await start_ws(memory_bus, public_read=False)
    async with connect(url(server.port)) as ws:
        await send(ws, {"type": "auth", "token": PLAIN["reader"]})
        assert (await recv_json(ws))["type"] == "authenticated"
        await wait_until(lambda: len(server.clients) == 1, what="connected")
        (client,) = server.clients
        assert client.expiry is None  # API tokens do not expire: nothing will end the stream


async def test_since_the_hub_has_not_reached_yet_is_no_resync(
    memory_bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(memory_bus)
    assert server._hub is not None
    server._hub.cancel()  # the hub stops following the bus: it is now behind it
    with contextlib.suppress(asyncio.CancelledError):
        await server._hub
    behind = server.hub_seq
    ahead = [await memory_bus.publish(EventName.BLOCK_NEW, "ethereum", {"i": i}) for i in range(3)]
    async with connect(url(server.port)) as ws:
        # a client that saw these events through another gateway: the stream did not restart
        since = ahead[-1].seq
        assert since > behind
        await send(ws, {"type": "subscribe", "events": ["block.new"], "since": since})
        assert (await recv_json(ws))["type"] == "subscribed"
        await send(ws, {"type": "ping"})
        assert await recv_json(ws) == {"type": "pong"}  # answered in order, after no resync


def _refused(kind: str) -> float:
    return float(REFUSED.labels(result=kind)._value.get())


async def test_connections_are_capped_per_address_and_in_total(
    memory_bus: Bus, start_ws: StartServer
) -> None:
    server = await start_ws(memory_bus, max_connections=5, max_connections_per_address=3)
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(connect(url(server.port))) for _ in range(3)]
        before = _refused("per_address")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server.port)):
                pass
        assert refused.value.response.status_code == 429
        assert b"too many WebSocket connections from 127.0.0.1" in refused.value.response.body
        assert refused.value.response.headers["Retry-After"] == "5"
        assert _refused("per_address") == before + 1
        # another address (the whole of 127/8 is loopback) still gets in, up to the total
        for _ in range(2):
            other = connect(url(server.port), local_addr=("127.0.0.2", 0))
            held.append(await stack.enter_async_context(other))
        before = _refused("total")
        with pytest.raises(InvalidStatus) as full:
            async with connect(url(server.port), local_addr=("127.0.0.3", 0)):
                pass
        assert full.value.response.status_code == 503 and _refused("total") == before + 1
        for ws in held:  # the admitted ones are unaffected
            await send(ws, {"type": "ping"})
            assert await recv_json(ws) == {"type": "pong"}
        await held[0].close()
        await wait_until(lambda: server.admitted["127.0.0.1"] == 2, what="slot released")
        async with connect(url(server.port)) as again:
            await send(again, {"type": "ping"})
            assert await recv_json(again) == {"type": "pong"}
    await wait_until(lambda: not server.admitted, what="every slot released")


async def test_a_client_that_stops_reading_is_cut_by_bytes_waiting(
    memory_bus: Bus, start_ws: StartServer
) -> None:
    # the default queue bound (1000 messages) would take minutes at this rate: bytes cut first
    server = await start_ws(memory_bus, max_buffered_bytes=256 * 1024)
    dropped = DROPPED._value.get()
    async with (
        connect(url(server.port), compression=None) as reader,
        connect(url(server.port), compression=None, max_queue=1) as stalled,
    ):
        for ws in (reader, stalled):
            await send(ws, {"type": "subscribe", "events": ["trade.included"]})
            assert (await recv_json(ws))["type"] == "subscribed"
        stalled.transport.pause_reading()
        received: list[int] = []

        async def read() -> None:
            while True:
                received.append((await recv_json(reader))["seq"])

        task = asyncio.create_task(read())
        published: list[int] = []
        for i in range(4000):  # 2 kB each: at most 8 MB, far below 1000 queued messages' worth
            event = await memory_bus.publish(
                EventName.TRADE_INCLUDED, "ethereum", {"i": i, "pad": "y" * 2000}
            )
            published.append(event.seq)
            await asyncio.sleep(0)
            if len(server.clients) == 1 or any(c.closed for c in server.clients):
                break
        await wait_until(lambda: any(c.closed for c in server.clients), within=10, what="cut")
        assert len(published) < 1000  # the cut came from bytes, not from the message count
        await wait_until(lambda: received[-1:] == published[-1:], within=10, what="reader got all")
        task.cancel()
        assert received == published
        assert DROPPED._value.get() > dropped
        stalled.transport.resume_reading()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await stalled.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == SLOW_CLIENT_CLOSE_CODE
        assert closed.value.rcvd.reason == (
            "slow consumer: more than 262144 bytes waiting; reconnect with since"
        )
