"""Hostile HTTP at the gateway: paths that mean different things to different parsers, deep
JSON, big bodies, unsupported methods, spoofed X-Forwarded-For.  Every refusal is the envelope.

A real uvicorn gateway (in this process, on a free port) is used where the server matters: the
raw request line (``--path-as-is`` paths) and the client address uvicorn reports.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from mevstack.api.http import MAX_BODY_BYTES
from mevstack.api.server import running_uvicorn
from mevstack.devnet.anvil import free_port
from mevstack.gateway.app import Gateway, GatewayOptions
from mevstack.gateway.paths import BadPath, normalise
from mevstack.gateway.ratelimit import RateLimits
from tests.api.conftest import auth, make_authenticator
from tests.gateway.conftest import EngineServer

DEEP = b"[" * 100_000 + b"]" * 100_000
ATTACK = "/api/mev/opportunities/..%2F..%2Fagents%2Farbitrage:base%2Fstop%23/execute"


def assert_envelope(answer: httpx.Response, status: int, code: str | None = None) -> None:
    assert answer.status_code == status, (str(answer.request.url), answer.text[:300])
    error = answer.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_normalise_decodes_once_and_re_encodes_each_segment() -> None:
    target = normalise(b"/api/trades/a%23b%3Fc%20d%25e?x=1")
    assert target.decoded == "/api/trades/a#b?c d%e"
    assert target.encoded == "/api/trades/a%23b%3Fc%20d%25e"
    assert (
        normalise(b"/api/agents/arbitrage:base/stop").encoded == "/api/agents/arbitrage:base/stop"
    )
    refused = [
        b"/api/../metrics",
        b"/api/./nodes",
        b"/api/%2e%2e/metrics",
        b"/api/%2E/nodes",
        b"/api/..%2Fmetrics",
        b"/api/a%5cb",
        ATTACK.encode(),
        b"/api/trades/%00",
        b"/api/trades/%09",
        b"/api/trades/%18",
        b"/api/trades/%7f",
        b"/api/trades/%C2%85",
        b"/api/trades/%ff",
        b"api/trades",
    ]
    for raw in refused:
        with pytest.raises(BadPath):
            normalise(raw)


async def test_confusing_paths_are_400_and_never_reach_an_engine(
    gateway: tuple[Gateway, httpx.AsyncClient], engines: list[EngineServer]
) -> None:
    _, client = gateway
    rid = f"attack-{uuid.uuid4().hex[:8]}"
    for token in ("reader", "trader", "admin"):
        for method, path in [
            ("POST", ATTACK),
            ("GET", "/api/..%2Fmetrics"),
            ("GET", "/api/trades/%00"),
            ("GET", "/api/trades/%09"),
            ("GET", "/api/trades/%18"),
            ("GET", "/api/trades/%7f"),
            ("POST", "/api/agents/%0a/stop"),
        ]:
            answer = await client.request(
                method, path, headers={**auth(token), "X-Request-Id": rid}
            )
            assert_envelope(answer, 400, "bad_request")
            assert "bad path" in answer.json()["error"]["message"]
    # without a token too: refused before auth, and no 500
    assert_envelope(await client.get("/api/trades/%00"), 400, "bad_request")
    assert all(rid not in e.request_ids for e in engines)


async def test_encoded_hash_and_question_mark_stay_inside_the_id(
    gateway: tuple[Gateway, httpx.AsyncClient],
) -> None:
    _, client = gateway
    for path in ("/api/trades/%23", "/api/trades/%3F", "/api/mev/opportunities/a%23b"):
        answer = await client.get(path, headers=auth("reader"))
        # the engine saw an id holding '#' or '?' and refused it: no redirect, no other route
        assert_envelope(answer, 400, "bad_request")
        assert "location" not in answer.headers
    execute = await client.post("/api/mev/opportunities/x%23/execute", headers=auth("trader"))
    assert_envelope(execute, 400, "bad_request")
    stop = await client.post("/api/agents/x%3F/stop", headers=auth("trader"))
    assert_envelope(stop, 403, "forbidden")  # an agent route needs admin, whatever the id


async def test_deep_json_through_the_gateway_is_a_400(
    gateway: tuple[Gateway, httpx.AsyncClient],
) -> None:
    _, client = gateway
    headers = {"content-type": "application/json"}
    answer = await client.post("/api/auth/login", content=DEEP, headers=headers)
    assert_envelope(answer, 400, "bad_request")
    big = await client.post("/api/auth/login", content=b" " * (MAX_BODY_BYTES + 1), headers=headers)
    assert_envelope(big, 413, "payload_too_large")
    assert (await client.get("/health")).json()["status"] == "ok"


async def test_405_is_route_aware(gateway: tuple[Gateway, httpx.AsyncClient]) -> None:
    _, client = gateway
    cases = {
        ("DELETE", "/api/nodes"): "GET",
        ("PUT", "/api/trading/state"): "GET, PATCH",
        ("PUT", "/api/auth/login"): "POST",
        ("GET", "/api/mev/opportunities/x/execute"): "POST",
        ("OPTIONS", "/api/exploits"): "GET, POST",
        ("TRACE", "/api/agents"): "GET",
        ("POST", "/health"): "GET",
        ("DELETE", "/metrics"): "GET",
    }
    for (method, path), allow in cases.items():
        for headers in ({}, auth("reader")):
            answer = await client.request(method, path, headers=headers)
            assert_envelope(answer, 405, "method_not_allowed")
            assert answer.headers["allow"] == allow, (method, path)
    # a method on a path no engine route has: not a 405 with an empty Allow
    nowhere = await client.request("TRACE", "/api/nope", headers=auth("reader"))
    assert_envelope(nowhere, 404, "not_found")
    assert "allow" not in nowhere.headers


@asynccontextmanager
async def served_gateway(
    tmp_path: Path, engines: list[EngineServer], **options: object
) -> AsyncIterator[str]:
    gateway = Gateway(
        GatewayOptions(backends=[e.url for e in engines], **options),  # type: ignore[arg-type]
        make_authenticator(tmp_path, public_read=True),
    )
    port = free_port()
    async with running_uvicorn(gateway.app, "127.0.0.1", port, "gateway"):
        yield f"127.0.0.1:{port}"


async def raw_get(address: str, target: bytes) -> tuple[int, bytes]:
    """One request line sent exactly as given (what ``curl --path-as-is`` does)."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_raw_dot_segments_on_the_wire(tmp_path: Path, engines: list[EngineServer]) -> None:
    async with served_gateway(tmp_path, engines) as address:
        for target in (
            b"/api/../metrics",
            b"/api/%2e%2e/metrics",
            b"/api/mev/../../metrics",
            b"/api/./nodes",
            b"/api/..%2Fmetrics",
        ):
            status, body = await raw_get(address, target)
            assert status == 400, (target, body)
            assert orjson.loads(body)["error"]["code"] == "bad_request"
        status, body = await raw_get(address, b"/api/nodes?x=" + b"a" * 200_000)
        assert status == 400 and orjson.loads(body)["error"]["code"] == "bad_request"
        status, _ = await raw_get(address, b"/api/trades/nope")
        assert status == 401  # a plain path reaches auth


@pytest.mark.parametrize("trusted", [(), ("127.0.0.1",)])
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, engines: list[EngineServer], trusted: tuple[str, ...]
) -> None:
    limits = RateLimits(per_token=10**6, per_address=20, window_s=60)
    async with (
        served_gateway(tmp_path, engines, limits=limits, trusted_proxies=trusted) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        codes = []
        for _ in range(40):
            spoofed = ".".join(str(random.randint(1, 254)) for _ in range(4))
            answer = await http.get(
                "/api/trades?limit=1", headers={**auth("reader"), "X-Forwarded-For": spoofed}
            )
            codes.append(answer.status_code)
    if trusted:
        # loopback is a configured proxy here: each forwarded address has its own budget
        assert codes == [200] * 40
    else:
        # uvicorn must not rewrite the peer from the header: one address, one budget
        assert codes == [200] * 20 + [429] * 20
