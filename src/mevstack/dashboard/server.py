"""Serving the dashboard (port 5002): the static page, its ``/config.js`` and the vendored charts.

The page is plain ES modules with no build step.  This server only hands out files: the page
itself talks to the gateway (REST, 8093) and the WebSocket (8094) like any other client, and
``/config.js`` tells it where those are.  The chart library (uPlot) comes from the npm lock file
into ``node_modules`` and is mounted at ``/vendor/uplot``; nothing is copied into the repo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from mevstack import __version__
from mevstack.api.server import running_uvicorn
from mevstack.config import Settings
from mevstack.errors import ConfigError

STATIC_DIR = Path(__file__).parent / "static"
# src/mevstack/dashboard/server.py -> the repository root holds node_modules (make setup).
REPO_ROOT = Path(__file__).resolve().parents[3]
UPLOT_DIST = REPO_ROOT / "node_modules" / "uplot" / "dist"
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
DEFAULT_HEALTH_POLL_S = 12.0
MIN_HEALTH_POLL_S = 2.0


def health_poll_interval(settings: Settings) -> float:
    """Once per block time of the fastest configured chain (never faster than every 2 s)."""
    times = [chain.block_time for chain in settings.chains]
    return max(MIN_HEALTH_POLL_S, min(times, default=DEFAULT_HEALTH_POLL_S))


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the page finds the public API; ``host`` None means "the host the page came from"."""

    host: str | None
    gateway_port: int
    ws_port: int
    # Backend health is the one thing the page polls; data itself arrives over the WebSocket.
    health_poll_s: float = DEFAULT_HEALTH_POLL_S

    @classmethod
    def from_settings(cls, settings: Settings, *, health_poll_s: float | None = None) -> Endpoints:
        server = settings.server
        host = None if server.host in _WILDCARD_HOSTS else server.host
        if health_poll_s is None:
            health_poll_s = health_poll_interval(settings)
        return cls(host, server.gateway_port, server.ws_port, health_poll_s)

    def to_json(self) -> dict[str, object]:
        return {
            "host": self.host,
            "gatewayPort": self.gateway_port,
            "wsPort": self.ws_port,
            "healthPollS": self.health_poll_s,
            "version": __version__,
        }

    def connect_sources(self) -> str:
        if self.host is None:
            # A wildcard bind: the browser uses whatever host name reached us.
            return f"http://*:{self.gateway_port} ws://*:{self.ws_port}"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.gateway_port} ws://{shown}:{self.ws_port}"


class _SecurityHeaders:
    """A strict CSP: scripts only from here, network only to the gateway and the WebSocket."""

    def __init__(self, app: ASGIApp, endpoints: Endpoints) -> None:
        self.app = app
        self.headers = [
            (
                b"content-security-policy",
                (
                    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                    f"img-src 'self' data:; connect-src 'self' {endpoints.connect_sources()}; "
                    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
                ).encode(),
            ),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-cache"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))  # type: ignore[call-overload]
                message["headers"] = raw + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


def create_dashboard_app(endpoints: Endpoints, *, uplot_dist: Path = UPLOT_DIST) -> ASGIApp:
    """The dashboard's ASGI app; a missing npm install is a ConfigError naming the fix."""
    if not (uplot_dist / "uPlot.esm.js").is_file():
        raise ConfigError(f"dashboard: {uplot_dist} is missing; run `make setup` (npm ci)")
    config_js = "export const config = " + json.dumps(endpoints.to_json()) + ";\n"

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def config(_: Request) -> Response:
        return Response(config_js, media_type="text/javascript")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/config.js", config),
            Route("/health", health),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            Mount("/vendor/uplot", StaticFiles(directory=uplot_dist), name="uplot"),
        ]
    )
    return _SecurityHeaders(app, endpoints)


@contextlib.asynccontextmanager
async def running_dashboard(
    settings: Settings, *, port: int | None = None, health_poll_s: float | None = None
) -> AsyncIterator[int]:
    """The dashboard listening (on ``server.dashboard_port`` unless given); yields the port."""
    app = create_dashboard_app(Endpoints.from_settings(settings, health_poll_s=health_poll_s))
    bind = settings.server.dashboard_port if port is None else port
    async with running_uvicorn(app, settings.server.host, bind, "dashboard") as (server, _):
        yield int(server.servers[0].sockets[0].getsockname()[1])


async def serve_dashboard(settings: Settings) -> None:
    """``mevstack dashboard``: serve until interrupted (uvicorn handles SIGINT/SIGTERM)."""
    app = create_dashboard_app(Endpoints.from_settings(settings))
    server = settings.server
    async with running_uvicorn(app, server.host, server.dashboard_port, "dashboard") as (_, task):
        await asyncio.shield(task)
