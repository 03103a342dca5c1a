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
from mevstack.gateway.ws import SESSION_EXPIRED_CLOSE_CODE, SLOW_CLIENT_CLOSE_CODE, Client
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


def test_gas_and_node_status_coalesce_but_trades_never() -> None:
    class _Server:
        def spawn(self, coro: Any) -> None:
            coro.close()

    client = Client(_Server(), None, maxsize=10)  # type: ignore[arg-type]
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
    assert client.latest[("gas.price", "ethereum", None)].seq == 5
    assert client.latest[("node.status", "ethereum", "a")].seq == 9
    assert [i.seq for i in client.queue if isinstance(i, Event)] == [10, 11, 12]
    for seq in range(13, 17):
        client.offer(ev(seq, "trade.failed", "ethereum"))
    assert client.closed  # the 11th waiting message does not fit: cut, never dropped silently


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
