"""The gateway's pure parts: cache freshness rules, stale marking, rate-limit windows."""

from __future__ import annotations

import orjson
import pytest

from mevstack.config import ServerConfig
from mevstack.errors import ConfigError
from mevstack.gateway.cache import ResponseCache, affected_prefixes, cache_key, mark_stale
from mevstack.gateway.proxies import client_address, parse_networks
from mevstack.gateway.ratelimit import (
    MemoryRateLimiter,
    RateLimits,
    limits_from_config,
)


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


def test_writes_invalidate_their_resources_and_what_they_change() -> None:
    assert affected_prefixes("/api/trading/state") == ("/api/trading",)
    assert affected_prefixes("/api/agents/arbitrage/stop") == ("/api/agents",)
    assert affected_prefixes("/api/exploits") == ("/api/exploits",)
    assert set(affected_prefixes("/api/mev/opportunities/opp-1/execute")) == {
        "/api/mev",
        "/api/trades",
        "/api/trading/state",
    }
    assert affected_prefixes("/openapi.json") == ()
    cache = ResponseCache()
    body = b'{"data": [], "meta": {}}'
    for key in ("/api/agents", "/api/agents?x=1", "/api/agentsx", "/api/trades", "/api/mev/x"):
        cache.store(key, 200, body, "application/json", "e")
    before = cache.epoch
    assert cache.invalidate(("/api/agents", "/api/mev")) == 3
    assert cache.lookup("/api/agentsx", "/api/agentsx") is not None
    assert cache.lookup("/api/agents?x=1", "/api/agents") is None
    # a read that started before the write cannot store its outdated answer afterwards
    cache.store("/api/agents", 200, body, "application/json", "e", epoch=before)
    assert cache.lookup("/api/agents", "/api/agents") is None
    cache.store("/api/agents", 200, body, "application/json", "e", epoch=cache.epoch)
    assert cache.lookup("/api/agents", "/api/agents") is not None


def test_client_address_believes_only_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "::1"])
    assert client_address("203.0.113.9", "1.1.1.1", trusted) == "203.0.113.9"
    assert client_address("10.1.2.3", None, trusted) == "10.1.2.3"
    assert client_address("10.1.2.3", "1.1.1.1, 198.51.100.7", trusted) == "198.51.100.7"
    # the client's own entries (left) are ignored; our inner proxies (right) are skipped
    assert client_address("::1", "6.6.6.6, 198.51.100.7, 10.0.0.5", trusted) == "198.51.100.7"
    assert client_address("10.1.2.3", "10.0.0.9, 10.0.0.5", trusted) == "10.0.0.9"
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies: 'nope' is not"):
        parse_networks(["nope"])


def test_limits_come_from_server_config() -> None:
    assert limits_from_config(ServerConfig()) == RateLimits()
    server = ServerConfig(rate_limit_per_token=7, rate_limit_window_s=2.0)
    assert limits_from_config(server) == RateLimits(7, RateLimits().per_address, 2.0)
