"""The gateway's pure parts: cache freshness rules, stale marking, rate-limit windows."""

from __future__ import annotations

import orjson
import pytest

from mevstack.errors import ConfigError
from mevstack.gateway.cache import ResponseCache, cache_key, mark_stale
from mevstack.gateway.ratelimit import MemoryRateLimiter, RateLimits, limits_from_env


def test_cache_fresh_then_revalidate_then_expired_and_only_200s() -> None:
    now = [100.0]
    cache = ResponseCache(ttls={"/api/gas": 1.0, "/api": 5.0}, swr_s=2.0, clock=lambda: now[0])
    body = orjson.dumps({"data": [1], "meta": {"count": 1, "stale": False}})
    key = cache_key("/api/gas", "b=2&a=1")
    assert key == cache_key("/api/gas", "a=1&b=2")
    cache.store(key, 200, body, "application/json", "http://e")
    cache.store("/api/gas?x", 503, b"{}", "application/json", "http://e")
    assert cache.lookup("/api/gas?x", "/api/gas") is None
    states = []
    for t in (100.5, 101.5, 102.9, 103.0, 500.0):
        now[0] = t
        found = cache.lookup(key, "/api/gas")
        assert found is not None
        states.append(found[1])
    assert states == ["fresh", "revalidate", "revalidate", "expired", "expired"]
    assert cache.ttl("/api/trades/7") == 5.0 and cache.ttl("/api/gasx") == 5.0
    assert cache.ttl("/other") == cache.default_ttl_s


def test_mark_stale_keeps_the_data_and_adds_age() -> None:
    body = orjson.dumps(
        {"data": [{"id": "a"}], "meta": {"count": 1, "stale": False, "source": "e"}}
    )
    marked = orjson.loads(mark_stale(body, 12.34567) or b"")
    assert marked["data"] == [{"id": "a"}]
    assert marked["meta"] == {"count": 1, "stale": True, "source": "e", "age_s": 12.346}
    assert mark_stale(b"not json", 1) is None and mark_stale(b"[1]", 1) is None


async def test_memory_limiter_windows() -> None:
    now = [1000.2]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    answers = [await limiter.hit("k", 3, 1.0) for _ in range(4)]
    assert answers[:3] == [None, None, None]
    assert answers[3] == pytest.approx(0.8)
    assert await limiter.hit("other", 3, 1.0) is None
    now[0] = 1001.0
    assert await limiter.hit("k", 3, 1.0) is None


def test_limits_from_env() -> None:
    assert limits_from_env({}) == RateLimits()
    got = limits_from_env({"MEVSTACK_RATELIMIT_PER_TOKEN": "7", "MEVSTACK_RATELIMIT_WINDOW_S": "2"})
    assert (got.per_token, got.per_address, got.window_s) == (7, RateLimits().per_address, 2.0)
    with pytest.raises(ConfigError, match="MEVSTACK_RATELIMIT_PER_ADDRESS"):
        limits_from_env({"MEVSTACK_RATELIMIT_PER_ADDRESS": "lots"})
