"""The event bridge of ``mevstack up``: the engine's bus carried to the front process.

``mevstack up`` keeps the in-memory bus, which only reaches subscribers of the same object, but
serves the WebSocket from a child process (:mod:`mevstack.gateway.front`).  The engine side
(:func:`forward_events`) follows its bus with one subscription and writes every event, in seq
order, as one JSON line on a local stream socket; the front side (:func:`follow_events`) feeds
them into a :class:`MirrorBus`, which the WebSocket server reads like any bus: same seqs, same
bounded replay buffer (pre-filled with what the engine's buffer held when the bridge started).

Nothing is lost silently: when the bridge itself falls behind (its subscription overflows) the
engine side sends ``{"gap": n}`` and the mirror reports the gap to its subscribers and forgets
its buffer, so WebSocket clients get ``resync`` rather than a hole.  The engine side never waits
for the front process beyond the socket's own buffer: a stalled front process overflows the
bridge's subscription, not the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from mevstack.bus import Bus, ReplayGap, SubscriptionClosed, SubscriptionOverflow
from mevstack.bus.base import BusError
from mevstack.bus.memory import MemoryBus
from mevstack.events import Event, EventName
from mevstack.obs import metrics

log = logging.getLogger(__name__)

BRIDGE_QUEUE = 20_000  # minutes of events: a stalled front process is resynced, not hoarded for
LINE_LIMIT = 64 * 1024 * 1024  # one event line; far above any event the engine publishes

GAPS = metrics.counter(
    "mevstack_ws_bridge_gaps_total",
    "Times the engine-to-WebSocket event bridge fell behind and its clients were resynced.",
)


def _line(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc) + b"\n"


async def _buffered(bus: Bus, upto: int) -> list[Event]:
    """What the bus's replay buffer holds up to ``upto`` (its oldest events onwards)."""
    try:
        events = await bus.replay(0)
    except ReplayGap as gap:
        if gap.oldest is None:
            return []
        events = await bus.replay(gap.oldest - 1)
    return [e for e in events if e.seq <= upto]


async def forward_events(bus: Bus, writer: asyncio.StreamWriter) -> None:
    """Write every event of ``bus`` to ``writer`` until the bus closes or the peer goes away."""
    sub = await bus.subscribe("ws-bridge", maxsize=BRIDGE_QUEUE)
    try:
        for event in await _buffered(bus, sub.start_seq):
            writer.write(_line(event.model_dump(mode="json")))
        await writer.drain()
        while True:
            batch: list[Event] = []
            overflow: SubscriptionOverflow | None = None
            try:
                batch.append(await sub.get())
                # Everything already queued goes in the same write, then one drain for all.
                while (more := sub.get_nowait()) is not None:
                    batch.append(more)
            except SubscriptionClosed:
                return
            except SubscriptionOverflow as exc:
                overflow = exc
            for event in batch:
                writer.write(_line(event.model_dump(mode="json")))
            if overflow is not None:
                GAPS.inc()
                log.warning("event bridge fell behind: %s; WebSocket clients resync", overflow)
                sub = await bus.subscribe("ws-bridge", maxsize=BRIDGE_QUEUE)
                writer.write(_line({"gap": overflow.dropped}))
            await writer.drain()
    finally:
        sub.close()


async def follow_events(reader: asyncio.StreamReader, mirror: MirrorBus) -> None:
    """Feed ``mirror`` from the bridge until the engine side closes it (returns on EOF)."""
    while True:
        line = await reader.readline()
        if not line:
            return
        doc = orjson.loads(line)
        if "gap" in doc:
            mirror.gap(int(doc["gap"]))
        else:
            mirror.inject(Event.model_validate(doc))


class MirrorBus(MemoryBus):
    """A read-only bus whose events (already stamped) come from another process's bus; it
    subscribes and replays exactly as the in-process bus does."""

    def inject(self, event: Event) -> None:
        if self._closed or event.seq <= self._seq:
            return
        if self._buffer and event.seq != self._seq + 1:
            self._buffer.clear()  # never replay across a hole
        self._seq = event.seq
        self._buffer.append(event)
        self._subs.deliver(event)

    def gap(self, missed: int) -> None:
        self._buffer.clear()
        self._subs.gap(missed)

    async def publish(
        self, event: EventName | str, chain: str | None, data: Mapping[str, Any]
    ) -> Event:
        raise BusError("this bus mirrors the engine's events and cannot publish")
