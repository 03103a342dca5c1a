"""The Redis bus (``redis://``): several processes and gateways share one sequence and one buffer.

Layout under a key prefix (``namespace``, so concurrent runs never collide):

* ``<ns>:seq``: the global sequence, advanced by INCR;
* ``<ns>:events``: a stream capped at ``replay_size`` entries whose entry id is ``<seq>-0``.

Publishing is one Lua script (INCR + XADD), so the sequence and the stream order can never
disagree, whichever process publishes.  Each bus instance runs one reader task that follows the
stream with XREAD BLOCK and fans events out to its local subscriptions in ``seq`` order; a
subscriber therefore sees its own process's events and everyone else's in one order.

Redis restarts: commands retry with a short backoff and the reader reconnects and continues
from the last id it saw.  The reader's connection has no client-side retry on purpose: a
transparent reconnect would hide the restart from it, and it must know in order to restore
the sequence.  If the restarted Redis lost its data, the sequence is restored to the
highest seq this process has seen, both by the publish script (``floor`` argument) and by the
reader as soon as it reconnects, so seq never goes backwards; events that a trim or the restart
lost are reported to subscribers (overflow signalling) rather than skipped silently.  Known
limit: another process that publishes in the instant between an empty Redis coming back and
this reader reconnecting can reuse a seq this process already saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
from mevstack.obs.log import redact_text

log = logging.getLogger(__name__)

_PUBLISH_LUA = """
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'p', ARGV[3])
return seq
"""

# After a reconnect: a Redis that restarted empty must not hand out seqs we have already seen.
_FLOOR_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], floor)
end
return current
"""

_READ_BLOCK_MS = 1000
_READ_COUNT = 500
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


def _encode(event: EventName, chain: str | None, ts: str, data: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps({"e": event.value, "c": chain, "t": ts, "d": data})
    except TypeError as exc:
        raise BusError(f"event {event.value} data is not JSON-serialisable: {exc}") from None


def _decode(seq: int, payload: bytes) -> Event:
    doc = orjson.loads(payload)
    return Event(event=EventName(doc["e"]), seq=seq, ts=doc["t"], chain=doc["c"], data=doc["d"])


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class RedisBus:
    """A bus whose sequence and replay buffer live in Redis."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "mevstack",
        replay_size: int = DEFAULT_REPLAY_SIZE,
        timeout: float = 5.0,
    ) -> None:
        if replay_size < 1:
            raise BusError("bus replay_size must be at least 1")
        if not namespace or any(c.isspace() for c in namespace):
            raise BusError(f"bad bus namespace {namespace!r}")
        self.url = url
        self.namespace = namespace
        self.replay_size = replay_size
        self._seq_key = f"{namespace}:seq"
        self._stream_key = f"{namespace}:events"
        self._safe_url = redact_text(url)
        try:
            self._redis = Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=6),
                retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
            )
            # The reader blocks in XREAD, so its socket timeout must outlast the block; it
            # retries by itself (see _follow_stream) so that it sees every reconnect.
            self._reader_redis = Redis.from_url(
                url,
                socket_timeout=timeout + _READ_BLOCK_MS / 1000,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=0),
            )
        except ValueError as exc:
            raise BusError(f"bad redis bus URL {self._safe_url!r}: {exc}") from None
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._floor_script = self._reader_redis.register_script(_FLOOR_LUA)
        self._subs = SubscriberSet()
        self._max_seen = 0  # highest seq this instance has published or read
        self._cursor = 0  # last seq the reader delivered
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    def _unreachable(self, exc: BaseException) -> BusError:
        return BusError(f"redis bus at {self._safe_url} unreachable: {exc}")

    async def publish(
        self, event: EventName | str, chain: str | None, data: Mapping[str, Any]
    ) -> Event:
        if self._closed:
            raise BusError("bus is closed")
        name = event_name(event)
        ts = utc_now_iso()
        payload = _encode(name, chain, ts, data)
        try:
            seq = int(
                await self._publish_script(
                    keys=[self._seq_key, self._stream_key],
                    args=[self._max_seen, self.replay_size, payload],
                )
            )
        except RedisError as exc:
            raise self._unreachable(exc) from None
        except OSError as exc:
            raise self._unreachable(exc) from None
        self._max_seen = max(self._max_seen, seq)
        count_published(chain)
        return Event(event=name, seq=seq, ts=ts, chain=chain, data=dict(data))

    async def last_seq(self) -> int:
        try:
            raw = await self._redis.get(self._seq_key)
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        return max(int(raw or 0), self._max_seen)

    async def subscribe(
        self,
        name: str,
        events: Iterable[str] | None = None,
        chains: Iterable[str] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        if self._closed:
            raise BusError("bus is closed")
        event_filter = normalize_events(events)
        start = await self.last_seq()
        sub = Subscription(
            name,
            events=event_filter,
            chains=None if chains is None else frozenset(chains),
            maxsize=maxsize,
            start_seq=start,
            head_seq=lambda: self._max_seen,
            on_close=self._subs.remove,
        )
        self._subs.add(sub)
        if self._reader is None or self._reader.done():
            self._cursor = start
            self._reader = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"redis-bus-reader:{self.namespace}"
            )
        return sub

    async def _read_loop(self) -> None:
        try:
            await self._follow_stream()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a foreign entry in our stream: never leave subscribers waiting forever.
            # They are told (overflow) and the next subscribe() starts a fresh reader.
            log.exception("redis bus reader stopped", extra={"endpoint": self._safe_url})
            self._subs.gap(0)

    async def _follow_stream(self) -> None:
        backoff = 0.02
        reconnected = False
        while not self._closed:
            try:
                if reconnected:
                    found = int(
                        await self._floor_script(keys=[self._seq_key], args=[self._max_seen])
                    )
                    if found < self._max_seen:
                        log.warning(
                            "redis lost the bus sequence (restart without persistence?); "
                            "restored it to the highest seq seen here",
                            extra={"endpoint": self._safe_url, "found": found},
                        )
                    reconnected = False
                response = await self._reader_redis.xread(
                    {self._stream_key: f"{self._cursor}-0"}, count=_READ_COUNT, block=_READ_BLOCK_MS
                )
                backoff = 0.02
            except asyncio.CancelledError:
                raise
            except (RedisError, *_TRANSIENT) as exc:
                log.warning(
                    "redis bus reader lost its connection; retrying",
                    extra={"endpoint": self._safe_url, "error": str(exc)},
                )
                reconnected = True
                # Reconnect backoff (product code, not test synchronisation).
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            # RESP2 (the default protocol): [[stream, [(id, {field: value}), ...]], ...]
            streams = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], response)
            for _stream, entries in streams or []:
                for entry_id, fields in entries:
                    seq = _seq_of(entry_id)
                    if seq <= self._cursor:
                        continue
                    if seq > self._cursor + 1:
                        # Trimmed before we read it, or lost in a Redis restart: say so.
                        self._subs.gap(seq - self._cursor - 1)
                    self._cursor = seq
                    self._max_seen = max(self._max_seen, seq)
                    try:
                        event = _decode(seq, fields[b"p"])
                    except (KeyError, ValueError) as exc:
                        log.error("undecodable bus entry skipped", extra={"error": str(exc)})
                        self._subs.gap(1)
                        continue
                    self._subs.deliver(event)

    async def replay(self, since_seq: int) -> list[Event]:
        if since_seq < 0:
            raise BusError(f"replay since seq must be >= 0, got {since_seq}")
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._seq_key)
                pipe.xrange(self._stream_key, min=f"{since_seq + 1}-0", max="+")
                pipe.xrange(self._stream_key, min="-", max="+", count=1)
                raw_head, entries, first = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        head = max(int(raw_head or 0), self._max_seen)
        if since_seq >= head:
            return []
        if not entries or _seq_of(entries[0][0]) != since_seq + 1:
            oldest = _seq_of(first[0][0]) if first else None
            raise ReplayGap(since_seq, oldest)
        out = [_decode(_seq_of(entry_id), fields[b"p"]) for entry_id, fields in entries]
        self._max_seen = max(self._max_seen, out[-1].seq)
        return out

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    async def aclose(self) -> None:
        self._closed = True
        self._subs.close_all()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._redis.aclose()
        await self._reader_redis.aclose()
