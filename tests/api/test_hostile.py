"""Hostile input to the engine API: nothing crashes it, and every refusal is the error envelope.

In-process (ASGI) where the app decides; on a real uvicorn server where the server's own
behaviour matters (streamed bodies, request lines it cannot parse).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mevstack.api.http import MAX_BODY_BYTES
from mevstack.api.server import running_uvicorn
from mevstack.devnet.anvil import free_port
from tests.api.conftest import auth

# 200 KB nested 100,000 deep: enough to segfault a process whose recursion limit was raised.
DEEP = b"[" * 100_000 + b"]" * 100_000


def assert_envelope(answer: httpx.Response, status: int, code: str | None = None) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error


@pytest.fixture(scope="module")
async def engine_url(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    async with running_uvicorn(app, "127.0.0.1", port, "engine API"):
        yield f"http://127.0.0.1:{port}"


async def test_deeply_nested_json_is_a_400_and_the_process_lives(
    client: httpx.AsyncClient,
) -> None:
    json_headers = {"content-type": "application/json"}
    answer = await client.post("/api/auth/login", content=DEEP, headers=json_headers)
    assert_envelope(answer, 400, "bad_request")
    # just past orjson's depth limit, and as deep as it accepts: refused either way, no crash
    for depth in (1025, 1024, 990):
        body = b'{"token": ' + b"[" * depth + b"]" * depth + b"}"
        answer = await client.post("/api/auth/login", content=body, headers=json_headers)
        assert_envelope(answer, 400, "bad_request")
    patched = await client.patch(
        "/api/trading/state", content=DEEP, headers={**auth("admin"), **json_headers}
    )
    assert_envelope(patched, 400, "bad_request")
    assert (await client.get("/health")).status_code == 200


async def test_bodies_over_the_cap_are_413_without_being_read(engine_url: str) -> None:
    async with httpx.AsyncClient(base_url=engine_url, timeout=10) as http:
        declared = await http.post(
            "/api/auth/login",
            content=b"x" * (2 * MAX_BODY_BYTES),
            headers={"content-type": "application/json"},
        )
        assert_envelope(declared, 413, "payload_too_large")

        sent = 0

        async def stream() -> AsyncIterator[bytes]:
            nonlocal sent
            chunk = b" " * 65536
            for _ in range(4 * MAX_BODY_BYTES // len(chunk)):
                sent += len(chunk)
                yield chunk

        try:
            chunked = await http.post(
                "/api/auth/login", content=stream(), headers={"content-type": "application/json"}
            )
        except (httpx.WriteError, httpx.RemoteProtocolError):
            # the server answered and closed mid-upload: it did not read the rest
            assert sent < 4 * MAX_BODY_BYTES
        else:
            assert_envelope(chunked, 413, "payload_too_large")
        at_cap = await http.post(
            "/api/auth/login",
            content=b" " * (MAX_BODY_BYTES - 20) + b'{"token": "x"}',
            headers={"content-type": "application/json"},
        )
        assert_envelope(at_cap, 401, "unauthorized")  # read and parsed: the cap is not too low
        assert (await http.get("/health")).status_code == 200


async def test_what_uvicorn_refuses_is_the_envelope_too(engine_url: str) -> None:
    host, port = engine_url.removeprefix("http://").split(":")
    for target in (b"/api/nodes?x=" + b"a" * 200_000, b"/api/\x00nodes"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: engine\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), raw[:200]
        assert b"content-type: application/json" in head.lower()
        assert body.startswith(b'{"error":{"code":"bad_request","message":')


async def test_405_names_the_methods_of_the_route(client: httpx.AsyncClient) -> None:
    cases = {
        ("DELETE", "/api/nodes"): "GET",
        ("PUT", "/api/trading/state"): "GET, PATCH",
        ("PUT", "/api/auth/login"): "POST",
        ("GET", "/api/agents/a1/stop"): "POST",
        ("DELETE", "/api/exploits"): "GET, POST",
    }
    for (method, path), allow in cases.items():
        answer = await client.request(method, path, headers=auth("admin"))
        assert_envelope(answer, 405, "method_not_allowed")
        assert answer.headers["allow"] == allow, (method, path)


async def test_odd_paths_get_the_envelope(client: httpx.AsyncClient) -> None:
    for path in ("/api/trades/", "/api/nope", "/api/trades/%23", "/api/trades/%3F"):
        answer = await client.get(path, headers=auth("reader"))
        assert answer.status_code in (400, 404), path
        assert_envelope(answer, answer.status_code)
        assert "location" not in answer.headers
