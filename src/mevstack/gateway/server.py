"""``mevstack gateway``: the REST gateway (8093) and the WebSocket stream (8094) in one process.

Builds the parts from the settings (auth from config tokens, the database store and the state
dir's session secret; the bus; a Redis rate limiter when the bus is Redis) and serves both ports
until interrupted.  Auth is built exactly as the engine builds it (``api/server.py``), so both
accept the same API tokens and session tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn

from mevstack.api.server import (
    ServeError,
    build_authenticator,
    check_port_free,
    open_store,
    running_uvicorn,
)
from mevstack.bus import Bus, open_bus
from mevstack.config import Settings
from mevstack.gateway.app import Gateway, GatewayOptions
from mevstack.gateway.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    limits_from_config,
)
from mevstack.gateway.ws import WsServer
from mevstack.store import Store


def gateway_options(settings: Settings) -> GatewayOptions:
    """Everything the gateway takes from ``[server]``: the one source of its settings."""
    server = settings.server
    return GatewayOptions(
        backends=list(server.backends),
        cors_origins=list(server.cors_origins),
        limits=limits_from_config(server),
        trusted_proxies=tuple(server.trusted_proxies),
    )


def build_limiter(settings: Settings) -> RateLimiter:
    if urlsplit(settings.bus.url).scheme in ("redis", "rediss"):
        return RedisRateLimiter(settings.bus.url)
    return MemoryRateLimiter()


@dataclass
class GatewayProcess:
    gateway: Gateway
    ws: WsServer
    rest: uvicorn.Server
    task: asyncio.Task[None]
    bus: Bus
    store: Store


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings,
    *,
    bus: Bus | None = None,
    store: Store | None = None,
    handle_signals: bool = True,
) -> AsyncIterator[GatewayProcess]:
    """Both ports listening; on exit, everything stopped and closed.

    ``mevstack up``'s front process passes the bus that mirrors the engine's events, and
    handles SIGINT/SIGTERM itself (``handle_signals=False``).  What is passed in stays open.
    """
    server = settings.server
    check_port_free(server.host, server.gateway_port, "gateway")
    check_port_free(server.host, server.ws_port, "WebSocket")
    own_store = store is None
    own_bus = bus is None
    store = open_store(settings) if store is None else store
    bus = open_bus(settings.bus.url) if bus is None else bus
    try:
        authenticator = build_authenticator(settings, store)
        gateway = Gateway(gateway_options(settings), authenticator, limiter=build_limiter(settings))
        ws = WsServer(
            bus,
            authenticator,
            cors_origins=server.cors_origins,
            client_queue=server.ws_client_queue,
            max_buffered_bytes=server.ws_max_buffered_bytes,
            max_connections=server.ws_max_connections,
            max_connections_per_address=server.ws_max_connections_per_address,
        )
        try:
            await ws.start(server.host, server.ws_port)
        except OSError as exc:
            await ws.aclose()
            raise ServeError(
                f"WebSocket: cannot listen on {server.host}:{server.ws_port}: {exc.strerror}"
            ) from None
        try:
            async with running_uvicorn(
                gateway.app,
                server.host,
                server.gateway_port,
                "gateway",
                handle_signals=handle_signals,
            ) as (rest, task):
                yield GatewayProcess(gateway, ws, rest, task, bus, store)
        finally:
            await ws.aclose()
    finally:
        if own_bus:
            await bus.aclose()
        if own_store:
            store.close()


async def serve_gateway(settings: Settings) -> None:
    """Run until interrupted (uvicorn turns SIGINT/SIGTERM into a clean shutdown)."""
    async with running_gateway(settings) as process:
        await asyncio.shield(process.task)
