"""Gateway fixtures: buses (memory and real Redis), WebSocket servers on free ports, clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from mevstack.api.auth import Authenticator
from mevstack.bus import Bus, open_bus
from mevstack.devnet.anvil import free_port
from mevstack.gateway.app import Gateway, GatewayOptions
from mevstack.gateway.ratelimit import RateLimits, RedisRateLimiter
from mevstack.gateway.ws import WsServer
from tests.api.conftest import make_app, make_authenticator, make_view
from tests.waiting import wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
ORIGIN = "http://127.0.0.1:5002"
ORIGINS = [ORIGIN]


async def drop_namespace(namespace: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    namespace = f"mevstack-gw-test-{uuid.uuid4().hex}"
    url = "memory://" if request.param == "memory" else REDIS_URL
    opened = open_bus(url, namespace=namespace, replay_size=50)
    yield opened
    await opened.aclose()
    if request.param == "redis":
        await drop_namespace(namespace)


@pytest.fixture
async def memory_bus() -> AsyncIterator[Bus]:
    opened = open_bus("memory://", replay_size=50)
    yield opened
    await opened.aclose()


StartServer = Callable[..., Awaitable[WsServer]]


@pytest.fixture
async def start_ws(tmp_path: Path) -> AsyncIterator[StartServer]:
    servers: list[WsServer] = []

    async def start(bus: Bus, *, public_read: bool = True, **options: Any) -> WsServer:
        auth: Authenticator = make_authenticator(tmp_path, public_read=public_read)
        server = WsServer(bus, auth, cors_origins=ORIGINS, **options)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        message = await ws.recv()
    doc = orjson.loads(message)
    assert isinstance(doc, dict)
    return doc


class EngineServer:
    """A real engine API (uvicorn on a free port) in this process, which a test can kill."""

    def __init__(self, state_dir: Path, source: str, *, lease: bool = False) -> None:
        view = make_view(state_dir, source)
        self.view = view
        # what the engine runtime reports on /health when this replica holds the execution lease
        view.health = lambda: {"lease": lease}  # type: ignore[method-assign]
        self.request_ids: list[str] = []
        app = make_app(state_dir, view=view)
        ids = self.request_ids

        async def recorder(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                for key, value in scope["headers"]:
                    if key == b"x-request-id":
                        ids.append(value.decode())
            await app(scope, receive, send)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            recorder, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        await wait_until(lambda: self.server.started, what="engine started")

    async def kill(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        if self.task is not None:
            await self.task
            self.task = None


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[list[EngineServer]]:
    servers = [EngineServer(tmp_path, "engine-a"), EngineServer(tmp_path, "engine-b")]
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.kill()


async def open_gateway(
    tmp_path: Path,
    engines: list[EngineServer],
    limiter: RedisRateLimiter | None = None,
    **options: object,
) -> tuple[Gateway, httpx.AsyncClient]:
    gateway = Gateway(
        GatewayOptions(
            backends=[e.url for e in engines],
            cors_origins=[ORIGIN],
            health_interval=0.1,
            health_timeout=0.3,
            **options,  # type: ignore[arg-type]
        ),
        make_authenticator(tmp_path, public_read=False),
        limiter=limiter,
    )
    await gateway.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway"
    )
    return gateway, client


@pytest.fixture
async def gateway(
    tmp_path: Path, engines: list[EngineServer]
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gw, client = await open_gateway(
        tmp_path, engines, swr_s=0.0, ttls={"/api": 0.2}, limits=RateLimits(10**6, 10**6, 1.0)
    )
    yield gw, client
    await client.aclose()
    await gw.aclose()
