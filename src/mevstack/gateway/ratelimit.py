"""Rate limits per token and per client address: fixed windows, in memory or in Redis.

A budget is ``limit`` requests per ``window_s`` seconds per key.  :meth:`hit` counts one request
and answers None (allowed) or the seconds until the window resets (the ``Retry-After``).

With a Redis bus the counters live in Redis (``INCR`` + ``EXPIRE`` in one transaction), so every
gateway shares one budget; keys carry a namespace and never a plain token (the caller passes a
digest).  If Redis cannot be reached the request is allowed and the failure counted: an outage
of the limiter must not take the API down with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mevstack.config import ServerConfig
from mevstack.obs import metrics

log = logging.getLogger(__name__)

LIMITED = metrics.counter(
    "mevstack_gateway_rate_limited_total", "Requests refused with 429, by budget.", ["result"]
)
LIMITER_ERRORS = metrics.counter(
    "mevstack_gateway_rate_limiter_errors_total",
    "Rate-limit checks that could not reach Redis (the request was allowed).",
)


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_token: int = 200
    per_address: int = 100
    window_s: float = 1.0


def limits_from_config(server: ServerConfig) -> RateLimits:
    """The budgets of ``[server]`` (env overrides ``MEVSTACK_SERVER_RATE_LIMIT_*`` included)."""
    return RateLimits(
        server.rate_limit_per_token, server.rate_limit_per_address, server.rate_limit_window_s
    )


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None: ...

    async def hit_many(
        self, checks: Sequence[tuple[str, int]], window_s: float
    ) -> list[float | None]:
        """Count one request against several budgets at once (one round trip with Redis)."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """One process's counters (``mevstack up`` on the memory bus)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self.clock()
        window = int(now // window_s)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
        count += 1
        if len(self._windows) >= self.max_keys and key not in self._windows:
            # Old windows are worthless; dropping them all keeps memory bounded under a flood.
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        self._windows[key] = (window, count)
        if count <= limit:
            return None
        return (window + 1) * window_s - now

    async def hit_many(
        self, checks: Sequence[tuple[str, int]], window_s: float
    ) -> list[float | None]:
        return [await self.hit(key, limit, window_s) for key, limit in checks]

    async def aclose(self) -> None:
        self._windows.clear()


class RedisRateLimiter:
    """Counters shared by every gateway on one Redis."""

    def __init__(
        self, url: str, *, namespace: str = "mevstack", clock: Callable[[], float] = time.time
    ) -> None:
        self.redis: Redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.namespace = namespace
        self.clock = clock

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        return (await self.hit_many([(key, limit)], window_s))[0]

    async def hit_many(
        self, checks: Sequence[tuple[str, int]], window_s: float
    ) -> list[float | None]:
        now = self.clock()
        window = int(now // window_s)
        ttl = max(1, math.ceil(window_s * 2))
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, _ in checks:
                    name = f"{self.namespace}:ratelimit:{key}:{window}"
                    pipe.incr(name)
                    pipe.expire(name, ttl)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            LIMITER_ERRORS.inc()
            log.warning("rate limiter unavailable: %s", type(exc).__name__)
            return [None] * len(checks)
        wait = (window + 1) * window_s - now
        counts = replies[0::2]
        return [
            None if int(count) <= limit else wait
            for count, (_, limit) in zip(counts, checks, strict=True)
        ]

    async def aclose(self) -> None:
        await self.redis.aclose()


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
