"""The in-process bus (``memory://``): the embedded default of ``mevstack up``.

Publishing is synchronous fan-out into each subscriber's bounded queue, so it costs a few
microseconds and never waits for a slow consumer.  The replay buffer is a ring of the last
``replay_size`` events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from mevstack.bus.base import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REPLAY_SIZE,
    BusError,
    ReplayGap,
    SubscriberSet,
    Subscription,
    count_published,
    event_name,
    normalize_events,
)
from mevstack.events import Event, EventName, utc_now_iso


class MemoryBus:
    """One process, one sequence."""

    def __init__(self, *, replay_size: int = DEFAULT_REPLAY_SIZE, namespace: str = "") -> None:
        # ``namespace`` is accepted so callers can pass the same options to either bus; one
        # process's memory is already private.
        if replay_size < 1:
            raise BusError("bus replay_size must be at least 1")
        self.replay_size = replay_size
        self._seq = 0
        self._buffer: deque[Event] = deque(maxlen=replay_size)
        self._subs = SubscriberSet()
        self._closed = False

    async def publish(
        self, event: EventName | str, chain: str | None, data: Mapping[str, Any]
    ) -> Event:
        if self._closed:
            raise BusError("bus is closed")
        name = event_name(event)
        try:
            # Same rule as the Redis bus: data must survive the trip to a WebSocket client.
            orjson.dumps(data)
        except TypeError as exc:
            raise BusError(f"event {name.value} data is not JSON-serialisable: {exc}") from None
        self._seq += 1
        stamped = Event(event=name, seq=self._seq, ts=utc_now_iso(), chain=chain, data=dict(data))
        self._buffer.append(stamped)
        count_published(chain)
        self._subs.deliver(stamped)
        return stamped

    async def subscribe(
        self,
        name: str,
        events: Iterable[str] | None = None,
        chains: Iterable[str] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        if self._closed:
            raise BusError("bus is closed")
        sub = Subscription(
            name,
            events=normalize_events(events),
            chains=None if chains is None else frozenset(chains),
            maxsize=maxsize,
            start_seq=self._seq,
            head_seq=lambda: self._seq,
            on_close=self._subs.remove,
        )
        self._subs.add(sub)
        return sub

    async def replay(self, since_seq: int) -> list[Event]:
        if since_seq < 0:
            raise BusError(f"replay since seq must be >= 0, got {since_seq}")
        if since_seq >= self._seq:
            return []
        oldest = self._buffer[0].seq if self._buffer else None
        if oldest is None or oldest > since_seq + 1:
            raise ReplayGap(since_seq, oldest)
        # seqs in the buffer are contiguous, so the start index is arithmetic.
        return list(self._buffer)[since_seq + 1 - oldest :]

    async def last_seq(self) -> int:
        return self._seq

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    async def aclose(self) -> None:
        self._closed = True
        self._subs.close_all()
