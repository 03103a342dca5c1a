"""The gateway in front of two real engine API servers: routing, failover, cache, auth, limits."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from mevstack.gateway.app import Gateway
from mevstack.gateway.ratelimit import RateLimits, RedisRateLimiter
from tests.api.conftest import PLAIN, auth
from tests.gateway.conftest import ORIGIN, REDIS_URL, EngineServer, drop_namespace, open_gateway
from tests.waiting import wait_until


async def test_proxies_with_request_id_and_caches(
    gateway: tuple[Gateway, httpx.AsyncClient], engines: list[EngineServer]
) -> None:
    _, client = gateway
    rid = f"test-{uuid.uuid4().hex[:8]}"
    first = await client.get(
        "/api/mev/opportunities", headers={**auth("reader"), "X-Request-Id": rid}
    )
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    assert first.headers["x-request-id"] == rid
    served_by = {"engine-a": engines[0], "engine-b": engines[1]}[first.json()["meta"]["source"]]
    assert rid in served_by.request_ids  # passed to the engine
    second = await client.get("/api/mev/opportunities", headers=auth("reader"))
    assert second.headers["x-cache"] == "hit" and second.json() == first.json()
    one = await client.get("/api/mev/opportunities/opp-0002", headers=auth("reader"))
    assert one.json()["data"]["id"] == "opp-0002"
    missing = await client.get("/api/trades/nope", headers=auth("reader"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and len(health["backends"]) == 2
    doc = await client.get("/openapi.json")
    assert doc.status_code == 200 and "/api/mev/opportunities" in doc.json()["paths"]


async def test_auth_and_cors_at_the_gateway(gateway: tuple[Gateway, httpx.AsyncClient]) -> None:
    _, client = gateway
    assert (await client.get("/api/nodes")).status_code == 401
    post = await client.post("/api/mev/opportunities/opp-0001/execute", headers=auth("reader"))
    assert post.status_code == 403
    patch = await client.patch("/api/trading/state", json={}, headers=auth("trader"))
    assert patch.status_code == 403
    allowed = await client.post("/api/mev/opportunities/opp-0001/execute", headers=auth("trader"))
    assert allowed.status_code == 503  # passed auth, reached the engine, which has no executor
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = await client.options("/api/nodes", headers=preflight)
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    evil = await client.options(
        "/api/nodes", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in evil.headers
    login = await client.post("/api/auth/login", json={"token": "mvt_test-reader-token"})
    assert login.status_code == 200
    session = login.json()["data"]["session_token"]
    with_session = await client.get("/api/gas", headers={"Authorization": f"Bearer {session}"})
    assert (
        with_session.status_code == 503 and with_session.json()["error"]["code"] == "not_available"
    )


async def test_failover_within_a_second_then_stale_when_all_die(
    gateway: tuple[Gateway, httpx.AsyncClient], engines: list[EngineServer]
) -> None:
    _, client = gateway
    path = "/api/mev/opportunities?limit=3"
    first = (await client.get(path, headers=auth("reader"))).json()["meta"]["source"]
    # reads go to the healthiest engine (both are equal here, so either): kill that one
    dead, alive = (0, 1) if first == "engine-a" else (1, 0)
    survivor = ["engine-a", "engine-b"][alive]
    await engines[dead].kill()
    killed_at = time.monotonic()
    while True:
        answer = await client.get(path, headers=auth("reader"))
        assert answer.status_code == 200, answer.text  # reads never fail during the failover
        if answer.json()["meta"]["source"] == survivor and answer.headers["x-cache"] == "miss":
            break
        assert time.monotonic() - killed_at < 1.0, "failover took longer than 1 s"
    assert time.monotonic() - killed_at < 1.0
    await engines[alive].kill()
    died_at = time.monotonic()
    while True:  # fresh cache hits until the 0.2 s TTL runs out, then the marked last answer
        stale = await client.get(path, headers=auth("reader"))
        assert stale.status_code == 200, stale.text
        if stale.headers["x-cache"] == "stale":
            break
        assert stale.headers["x-cache"] == "hit"
        assert time.monotonic() - died_at < 1.0
    body = stale.json()
    assert body["meta"]["stale"] is True and body["meta"]["age_s"] >= 0
    assert body["meta"]["source"] == survivor and len(body["data"]) == 3
    never = await client.get("/api/trades?limit=7", headers=auth("reader"))
    assert never.status_code == 503 and never.json()["error"]["code"] == "no_backend"
    assert (await client.get("/health")).json()["status"] == "down"


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_rate_limits_answer_429_with_retry_after(
    tmp_path: Path, engines: list[EngineServer], kind: str
) -> None:
    namespace = f"mevstack-rl-test-{uuid.uuid4().hex}"
    limits = RateLimits(per_token=4, per_address=1000, window_s=30)
    opened: list[tuple[Gateway, httpx.AsyncClient]] = []
    for _ in range(2):
        limiter = RedisRateLimiter(REDIS_URL, namespace=namespace) if kind == "redis" else None
        opened.append(await open_gateway(tmp_path, engines, limits=limits, limiter=limiter))
    try:
        codes = []
        # with Redis, two gateways share one budget; in memory, each gateway has its own
        for i in range(6):
            _, client = opened[i % 2]
            codes.append(
                (await client.get("/api/mev/opportunities", headers=auth("reader"))).status_code
            )
        expected = [200] * 4 + [429] * 2 if kind == "redis" else [200] * 6
        assert codes == expected
        _, client = opened[0]
        for _ in range(3):
            last = await client.get("/api/mev/opportunities", headers=auth("reader"))
        assert last.status_code == 429
        assert 1 <= int(last.headers["retry-after"]) <= 30
        assert last.json()["error"]["code"] == "rate_limited"
        other = await client.get("/api/mev/opportunities", headers=auth("trader"))
        assert other.status_code == 200  # budgets are per token
    finally:
        for gw, client in opened:
            await client.aclose()
            await gw.aclose()
        if kind == "redis":
            await drop_namespace(namespace)


async def test_trades_go_to_the_lease_holder(tmp_path: Path) -> None:
    engines = [EngineServer(tmp_path, "engine-a"), EngineServer(tmp_path, "engine-b", lease=True)]
    for engine in engines:
        await engine.start()
    gw, client = await open_gateway(tmp_path, engines)
    try:
        assert [b.holds_lease for b in gw.pool.backends] == [False, True]
        rid = f"lease-{uuid.uuid4().hex[:8]}"
        answer = await client.post(
            "/api/mev/opportunities/opp-0001/execute",
            headers={**auth("trader"), "X-Request-Id": rid, "Idempotency-Key": "k1"},
        )
        assert answer.status_code == 503  # the engine has no executor yet; it did get the call
        assert rid in engines[1].request_ids and rid not in engines[0].request_ids
    finally:
        await client.aclose()
        await gw.aclose()
        for engine in engines:
            await engine.kill()


async def test_stale_while_revalidate_refreshes_in_the_background(
    tmp_path: Path, engines: list[EngineServer]
) -> None:
    gw, client = await open_gateway(tmp_path, engines, swr_s=30.0, ttls={"/api": 0.05})
    try:
        path = "/api/trades?limit=2"
        assert (await client.get(path, headers=auth("reader"))).headers["x-cache"] == "miss"
        key = "/api/trades?limit=2"
        first = gw.cache.lookup(key, "/api/trades")
        assert first is not None
        await wait_until(lambda: gw.cache.lookup(key, "/api/trades")[1] != "fresh")  # type: ignore[index]
        served = await client.get(path, headers=auth("reader"))
        assert served.status_code == 200 and served.headers["x-cache"] == "revalidate"
        # the refresh ran in the background and replaced the entry with a newer answer
        await wait_until(
            lambda: gw.cache.lookup(key, "/api/trades")[0].stored_at > first[0].stored_at,  # type: ignore[index]
            what="background refresh",
        )
    finally:
        await client.aclose()
        await gw.aclose()


async def test_client_address_from_trusted_proxy_only(
    tmp_path: Path, engines: list[EngineServer]
) -> None:
    limits = RateLimits(per_token=10**6, per_address=2, window_s=60)
    gw, client = await open_gateway(
        tmp_path, engines, limits=limits, trusted_proxies=frozenset({"127.0.0.1"})
    )
    try:
        # ASGITransport's peer is 127.0.0.1, a trusted proxy here: the forwarded address counts
        for who in ("10.0.0.1", "10.0.0.2"):
            codes = [
                (
                    await client.get(
                        "/api/agents",
                        headers={**auth("reader"), "X-Forwarded-For": f"1.2.3.4, {who}"},
                    )
                ).status_code
                for _ in range(3)
            ]
            assert codes[2] == 429 and codes[:2] != [429, 429], (who, codes)
    finally:
        await client.aclose()
        await gw.aclose()


async def test_a_read_failing_with_500_moves_to_the_next_engine(tmp_path: Path) -> None:
    engines = [EngineServer(tmp_path, "engine-a"), EngineServer(tmp_path, "engine-b")]
    healthy = engines[1]

    def broken() -> list[dict[str, object]]:
        raise RuntimeError("a bug in engine-a")  # the engine answers 500 for this path

    engines[0].view.nodes = broken  # type: ignore[method-assign]
    healthy.view.nodes = lambda: [{"chain": "ethereum"}]  # type: ignore[method-assign]
    for engine in engines:
        await engine.start()
    gw, client = await open_gateway(tmp_path, engines, limits=RateLimits(10**6, 10**6, 1.0))
    try:
        for _ in range(3):
            answer = await client.get("/api/nodes", headers=auth("reader"))
            assert answer.status_code == 200, answer.text
            assert answer.json()["meta"]["source"] == "engine-b"
            gw.cache._entries.clear()  # every read goes to the engines again
    finally:
        await client.aclose()
        await gw.aclose()
        for engine in engines:
            await engine.kill()


async def test_auth_is_checked_before_the_cache(
    tmp_path: Path, engines: list[EngineServer]
) -> None:
    gw, client = await open_gateway(
        tmp_path, engines, swr_s=0.0, ttls={"/api": 60.0}, limits=RateLimits(10**6, 10**6, 1.0)
    )
    try:
        first = await client.get("/api/mev/opportunities", headers=auth("reader"))
        assert first.status_code == 200 and first.headers["x-cache"] == "miss"
        again = await client.get("/api/mev/opportunities", headers=auth("admin"))
        assert again.headers["x-cache"] == "hit"  # the answer is in the cache now
        signer = gw.authenticator.signer
        expired, _ = signer.issue(await gw.authenticator.api_token(PLAIN["reader"]), ttl_s=-1)
        refused = {
            "no token": {},
            "wrong token": {"Authorization": "Bearer mvt_not-a-known-token"},
            "malformed header": {"Authorization": "Basic abc"},
            "expired session": {"Authorization": f"Bearer {expired}"},
        }
        for why, headers in refused.items():
            answer = await client.get("/api/mev/opportunities", headers=headers)
            assert answer.status_code == 401, why
            assert "x-cache" not in answer.headers and "data" not in answer.json(), why
    finally:
        await client.aclose()
        await gw.aclose()


async def test_a_successful_write_makes_the_next_read_fresh(tmp_path: Path) -> None:
    engine = EngineServer(tmp_path, "engine-a", lease=True)
    # the engine's own state for the endpoints whose runtime this test does not start
    state: dict[str, object] = {"mode": "paper", "kill_switch": False}
    agents = {"arbitrage": False}
    alerts: list[dict[str, object]] = []

    async def trading_state() -> dict[str, object]:
        return dict(state)

    async def patch_trading_state(changes: dict[str, object]) -> dict[str, object]:
        state.update(changes)
        return dict(state)

    async def list_agents() -> list[dict[str, object]]:
        return [{"id": k, "running": v} for k, v in agents.items()]

    async def set_agent_running(agent_id: str, running: bool) -> dict[str, object]:
        agents[agent_id] = running
        return {"id": agent_id, "running": running}

    async def exploits() -> list[dict[str, object]]:
        return list(alerts)

    async def add_exploit(alert: dict[str, object]) -> dict[str, object]:
        alerts.append(alert)
        return alert

    view = engine.view
    view.exploits = exploits  # type: ignore[method-assign]
    view.add_exploit = add_exploit  # type: ignore[method-assign]
    view.trading_state = trading_state  # type: ignore[method-assign]
    view.patch_trading_state = patch_trading_state  # type: ignore[method-assign]
    view.agents = list_agents  # type: ignore[method-assign]
    view.set_agent_running = set_agent_running  # type: ignore[method-assign]
    await engine.start()
    gw, client = await open_gateway(
        tmp_path, [engine], swr_s=0.0, ttls={"/api": 60.0}, limits=RateLimits(10**6, 10**6, 1.0)
    )
    try:
        for path in ("/api/trading/state", "/api/agents", "/api/exploits", "/api/nodes"):
            await client.get(path, headers=auth("reader"))
        cached = await client.get("/api/trading/state", headers=auth("reader"))
        assert cached.headers["x-cache"] == "hit"
        assert cached.json()["data"]["kill_switch"] is False
        patch = await client.patch(
            "/api/trading/state", json={"kill_switch": True}, headers=auth("admin")
        )
        assert patch.status_code == 200, patch.text
        fresh = await client.get("/api/trading/state", headers=auth("reader"))
        assert fresh.headers["x-cache"] == "miss" and fresh.json()["data"]["kill_switch"] is True
        start = await client.post("/api/agents/arbitrage/start", headers=auth("admin"))
        assert start.status_code == 200, start.text
        listed = await client.get("/api/agents", headers=auth("reader"))
        assert listed.headers["x-cache"] == "miss"
        assert listed.json()["data"] == [{"id": "arbitrage", "running": True}]
        alert = {"chain": "ethereum", "severity": "high", "pools": ["0x" + "11" * 20]}
        posted = await client.post("/api/exploits", json=alert, headers=auth("admin"))
        assert posted.status_code == 200, posted.text
        listed = await client.get("/api/exploits", headers=auth("reader"))
        assert listed.headers["x-cache"] == "miss" and listed.json()["data"] == [alert]
        # a refused write changes nothing, so it leaves the cache alone
        refused = await client.post("/api/agents/arbitrage/stop", headers=auth("reader"))
        assert refused.status_code == 403
        assert (await client.get("/api/agents", headers=auth("reader"))).headers["x-cache"] == "hit"
    finally:
        await client.aclose()
        await gw.aclose()
        await engine.kill()


async def test_refused_callers_spend_their_address_budget(
    tmp_path: Path, engines: list[EngineServer]
) -> None:
    limits = RateLimits(per_token=10**6, per_address=2, window_s=3600)
    gw, client = await open_gateway(tmp_path, engines, limits=limits)
    try:
        wrong = {"Authorization": "Bearer mvt_guess"}
        codes = [(await client.get("/api/agents", headers=wrong)).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert (await client.get("/api/agents", headers=auth("reader"))).status_code == 429
    finally:
        await client.aclose()
        await gw.aclose()
