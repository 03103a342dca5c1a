"""The bus interface and the parts both implementations share: subscriptions, errors, metrics.

Semantics every implementation keeps:

* ``publish`` stamps one global, strictly increasing ``seq`` (1, 2, 3...) and ``ts``; every
  subscriber sees events in ``seq`` order.
* ``subscribe`` returns a :class:`Subscription` that receives every matching event with
  ``seq > sub.start_seq``; ``replay(since)`` returns the buffered events with ``seq > since``.
  A consumer that must not miss anything (the WebSocket ``since``) subscribes first, then
  replays up to ``sub.start_seq`` and continues with the live events.
* ``replay`` raises :class:`ReplayGap` when the bounded buffer no longer reaches back to
  ``since + 1``; the WebSocket layer turns that into ``resync``.
* Each subscription has a bounded queue.  Its lag is measurable (``depth``, ``high_water``,
  ``lag``).  On overflow nothing is dropped silently: the subscription is marked overflowed,
  stops receiving, counts every event it misses in ``dropped`` and in the
  ``mevstack_bus_dropped_events_total`` metric, and once the consumer has read what was queued
  ``get()`` raises :class:`SubscriptionOverflow` carrying the last ``seq`` it delivered, so the
  consumer can ``replay`` from there or resync.
* An event without a chain (``chain=None``) belongs to no chain and passes every chain filter.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mevstack.errors import MevstackError
from mevstack.events import EVENT_NAMES, Event, EventName
from mevstack.obs import metrics

DEFAULT_REPLAY_SIZE = 10_000
DEFAULT_QUEUE_SIZE = 1_000

PUBLISHED = metrics.counter(
    "mevstack_bus_published_events_total", "Events published on the bus by this process.", ["chain"]
)
DROPPED = metrics.counter(
    "mevstack_bus_dropped_events_total",
    "Events a subscriber did not receive because its queue overflowed.",
)
OVERFLOWS = metrics.counter(
    "mevstack_bus_subscription_overflows_total", "Subscriptions that overflowed their queue."
)
MAX_DEPTH = metrics.gauge(
    "mevstack_bus_subscriber_queue_depth_max",
    "Deepest subscriber queue of this process right now (events waiting).",
)
_LIVE_SETS: weakref.WeakSet[SubscriberSet] = weakref.WeakSet()


def _deepest_queue() -> float:
    return float(max((s.max_depth() for s in list(_LIVE_SETS)), default=0))


# Computed when /metrics is scraped, so publishing pays nothing for it.
MAX_DEPTH.set_function(_deepest_queue)


_published_children: dict[str, Any] = {}


def count_published(chain: str | None) -> None:
    """Increment the published counter; children are cached (labels() costs ~1 µs a call)."""
    key = chain or ""
    child = _published_children.get(key)
    if child is None:
        child = _published_children[key] = PUBLISHED.labels(chain=key)
    child.inc()


class BusError(MevstackError):
    """The bus cannot do what was asked (bad URL, backend unreachable, closed)."""


class ReplayGap(BusError):
    """The replay buffer no longer reaches back to the requested ``seq``."""

    def __init__(self, since: int, oldest: int | None) -> None:
        self.since = since
        self.oldest = oldest
        where = "the buffer is empty" if oldest is None else f"oldest buffered seq is {oldest}"
        super().__init__(f"replay since seq {since} is no longer possible: {where}")


class SubscriptionOverflow(BusError):
    """The consumer fell behind, its queue overflowed and events after ``last_seq`` were missed."""

    def __init__(self, name: str, last_seq: int, dropped: int) -> None:
        self.name = name
        self.last_seq = last_seq
        self.dropped = dropped
        super().__init__(
            f"subscription {name!r} overflowed: {dropped} event(s) after seq {last_seq} missed"
        )


class SubscriptionClosed(BusError):
    """``get()`` on a subscription that was closed."""


def normalize_events(events: Iterable[str] | None) -> frozenset[str] | None:
    """Event filter as a set of names; unknown names are an error naming them."""
    if events is None:
        return None
    names = frozenset(str(e.value if isinstance(e, EventName) else e) for e in events)
    unknown = sorted(names - EVENT_NAMES)
    if unknown:
        raise BusError(f"unknown event name(s): {', '.join(unknown)}")
    return names


def event_name(event: EventName | str) -> EventName:
    try:
        return EventName(event)
    except ValueError:
        raise BusError(f"unknown event name: {event!r}") from None


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    name: str
    depth: int
    high_water: int
    maxsize: int
    delivered: int
    dropped: int
    overflowed: bool
    last_seq: int
    lag: int  # events published on the bus after the last one this consumer took


class Subscription:
    """A consumer's bounded view of the bus, as an async iterator or through ``await get()``."""

    def __init__(
        self,
        name: str,
        *,
        events: frozenset[str] | None,
        chains: frozenset[str] | None,
        maxsize: int,
        start_seq: int,
        head_seq: Callable[[], int],
        on_close: Callable[[Subscription], None],
    ) -> None:
        if maxsize < 1:
            raise BusError(f"subscription {name!r}: maxsize must be at least 1")
        self.name = name
        self.events = events
        self.chains = chains
        self.maxsize = maxsize
        self.start_seq = start_seq
        self._head_seq = head_seq
        self._on_close = on_close
        self._queue: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self.high_water = 0
        self.delivered = 0
        self.dropped = 0
        self.overflowed = False
        self.closed = False
        self.last_seq = start_seq

    def matches(self, event: Event) -> bool:
        if self.events is not None and event.event.value not in self.events:
            return False
        return self.chains is None or event.chain is None or event.chain in self.chains

    def offer(self, event: Event) -> None:
        """Called by the bus for every event, in seq order; never blocks the publisher."""
        if self.closed or event.seq <= self.start_seq or not self.matches(event):
            return
        if self.overflowed or len(self._queue) >= self.maxsize:
            if not self.overflowed:
                self.overflowed = True
                OVERFLOWS.inc()
            self.dropped += 1
            DROPPED.inc()
            self._wakeup.set()
            return
        self._queue.append(event)
        self.high_water = max(self.high_water, len(self._queue))
        self._wakeup.set()

    def mark_gap(self, missed: int) -> None:
        """The bus itself lost events before this subscriber could see them (e.g. Redis trim)."""
        if self.closed:
            return
        if not self.overflowed:
            self.overflowed = True
            OVERFLOWS.inc()
        self.dropped += missed
        DROPPED.inc(missed)
        self._wakeup.set()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def lag(self) -> int:
        return max(0, self._head_seq() - self.last_seq)

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            name=self.name,
            depth=self.depth,
            high_water=self.high_water,
            maxsize=self.maxsize,
            delivered=self.delivered,
            dropped=self.dropped,
            overflowed=self.overflowed,
            last_seq=self.last_seq,
            lag=self.lag,
        )

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when nothing is queued (raises like ``get``)."""
        if self._queue:
            event = self._queue.popleft()
            self.delivered += 1
            self.last_seq = event.seq
            return event
        if self.closed:
            raise SubscriptionClosed(f"subscription {self.name!r} is closed")
        if self.overflowed:
            # Told once; the subscription is finished and its consumer must resubscribe.
            dropped = self.dropped
            self.close()
            raise SubscriptionOverflow(self.name, self.last_seq, dropped)
        return None

    async def get(self) -> Event:
        """The next event (bound the wait with ``asyncio.timeout``).

        Raises SubscriptionOverflow once the queued events are consumed after an overflow, and
        SubscriptionClosed after ``close()``.
        """
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.get()
            except SubscriptionClosed:
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._on_close(self)
            self._wakeup.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SubscriberSet:
    """The subscriptions of one bus instance and the fan-out to them."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        _LIVE_SETS.add(self)

    def max_depth(self) -> int:
        return max((s.depth for s in self._subs), default=0)

    def add(self, sub: Subscription) -> None:
        self._subs.append(sub)

    def remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def deliver(self, event: Event) -> None:
        for sub in self._subs:
            sub.offer(event)

    def gap(self, missed: int) -> None:
        for sub in self._subs:
            sub.mark_gap(missed)

    def close_all(self) -> None:
        for sub in list(self._subs):
            sub.close()

    def __len__(self) -> int:
        return len(self._subs)


@runtime_checkable
class Bus(Protocol):
    """What producers and consumers use; ``open_bus(url)`` picks the implementation."""

    async def publish(
        self, event: EventName | str, chain: str | None, data: Mapping[str, Any]
    ) -> Event: ...

    async def subscribe(
        self,
        name: str,
        events: Iterable[str] | None = None,
        chains: Iterable[str] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription: ...

    async def replay(self, since_seq: int) -> list[Event]: ...

    async def last_seq(self) -> int: ...

    async def aclose(self) -> None: ...
