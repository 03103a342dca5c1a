"""Engine API: envelopes, filters, pagination, the error shape, /health, /metrics, OpenAPI."""

from __future__ import annotations

import httpx

from tests.api.conftest import auth


async def test_opportunities_envelope_filters_and_order(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/mev/opportunities", headers=auth("reader"))
    body = answer.json()
    assert answer.status_code == 200
    assert set(body["meta"]) >= {"count", "as_of", "stale", "source"}
    assert body["meta"]["count"] == len(body["data"]) == 30
    assert body["meta"]["stale"] is False and body["meta"]["source"] == "engine-test"
    stamps = [o["detected_at"] for o in body["data"]]
    assert stamps == sorted(stamps, reverse=True)
    backruns = await client.get(
        "/api/mev/opportunities", params={"kind": "backrun", "limit": 3}, headers=auth("reader")
    )
    rows = backruns.json()["data"]
    assert len(rows) == 3 and {o["kind"] for o in rows} == {"backrun"}
    none = await client.get(
        "/api/mev/opportunities", params={"chain": "polygon"}, headers=auth("reader")
    )
    assert none.json() == {**none.json(), "data": []} and none.json()["meta"]["count"] == 0
    one = await client.get("/api/mev/opportunities/opp-0007", headers=auth("reader"))
    assert one.json()["data"]["id"] == "opp-0007" and one.json()["meta"]["count"] == 1


async def test_trades_cursor_pagination_visits_each_once(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/trades", params=params, headers=auth("reader"))).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    missing = await client.get("/api/trades/trade-9999", headers=auth("reader"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_every_error_has_the_error_shape(client: httpx.AsyncClient) -> None:
    cases = [
        ("GET", "/api/nope", 404, "not_found"),
        ("DELETE", "/api/nodes", 405, "method_not_allowed"),
        ("GET", "/api/mev/opportunities?limit=0", 400, "bad_request"),
        ("GET", "/api/mev/opportunities?limit=abc", 400, "bad_request"),
        ("GET", "/api/mev/opportunities?kind=sandwich", 400, "bad_request"),
        ("GET", "/api/trades?cursor=%00", 400, "bad_request"),
        ("GET", "/api/mev/opportunities/opp-none", 404, "not_found"),
        ("GET", "/api/nodes", 503, "not_available"),
        ("GET", "/api/gas", 503, "not_available"),
        ("GET", "/api/trading/state", 503, "not_available"),
    ]
    for method, path, status, code in cases:
        answer = await client.request(method, path, headers=auth("reader"))
        assert answer.status_code == status, (path, answer.text)
        assert answer.json()["error"]["code"] == code, path
        assert answer.json()["error"]["message"]
    garbage = await client.patch(
        "/api/trading/state",
        content=b"{not json",
        headers={**auth("admin"), "content-type": "application/json"},
    )
    assert garbage.status_code == 400 and "error" in garbage.json()


async def test_health_metrics_openapi_and_request_id(client: httpx.AsyncClient) -> None:
    health = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert health.json()["status"] == "ok" and "version" in health.json()
    assert health.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/health")).headers["x-request-id"]) == 32
    await client.get("/api/mev/opportunities", headers=auth("reader"))
    prom = await client.get("/metrics")
    assert prom.headers["content-type"].startswith("text/plain")
    assert (
        'mevstack_http_requests_total{endpoint="/api/mev/opportunities",result="200"}' in prom.text
    )
    doc = (await client.get("/openapi.json")).json()
    for path in (
        "/api/nodes",
        "/api/gas",
        "/api/mev/opportunities",
        "/api/trades",
        "/api/mev/opportunities/{opportunity_id}/execute",
        "/api/trading/state",
        "/api/agents",
        "/api/exploits",
        "/api/mev/metrics",
        "/api/auth/login",
    ):
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert {"Opportunity", "Trade", "NodeStatus", "GasQuote", "ErrorBody"} <= set(schemas)
