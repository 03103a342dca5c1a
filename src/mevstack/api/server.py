"""Serving the engine API: building its parts from the settings and running it under uvicorn.

``build_authenticator`` is shared with the gateway, so both accept the same API tokens (config
and store) and the same session tokens (one secret in the state dir).  ``running_engine_api``
serves an app for an :class:`EngineView`; the engine runtime passes its own view, and until it
exists ``StoreView`` serves opportunities and trades from the database.

:func:`uvicorn_config` is how every HTTP port of mevstack is configured: uvicorn must not rewrite
the client address from ``X-Forwarded-For`` (only the gateway's ``server.trusted_proxies`` rule
decides whom to believe), and a request uvicorn itself cannot parse gets the JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mevstack.api.app import create_app
from mevstack.api.auth import (
    Authenticator,
    SessionSigner,
    load_or_create_secret,
    records_from_config,
)
from mevstack.api.http import error_body
from mevstack.api.store_view import StoreTokens
from mevstack.api.view import EngineView
from mevstack.config import Settings
from mevstack.errors import MevstackError
from mevstack.store import Store

STARTUP_TIMEOUT_S = 30.0


class ServeError(MevstackError):
    """A service cannot start (port taken, bad address)."""


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None


def open_store(settings: Settings) -> Store:
    url = settings.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        # The default relative SQLite path lives in the state dir; make sure it exists.
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return Store.open(url)


def build_authenticator(settings: Settings, store: Store | None) -> Authenticator:
    signer = SessionSigner(load_or_create_secret(settings.engine.state_dir))
    return Authenticator(
        config_tokens=records_from_config(settings.auth.tokens),
        store=None if store is None else StoreTokens(store),
        signer=signer,
        public_read=settings.server.public_read,
    )


class EnvelopeHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, answering a request it cannot parse with the JSON error shape."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(error_body(400, msg))
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def uvicorn_config(app: object, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=EnvelopeHttpProtocol,
        # The client address is the peer's; X-Forwarded-For is judged by the gateway alone.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


class SignalFreeServer(uvicorn.Server):
    """uvicorn without its own signal handling, for a process that decides itself when to stop
    (several uvicorn servers in one process would otherwise each catch, and re-raise, Ctrl-C)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_uvicorn(
    app: object, host: str, port: int, what: str, *, handle_signals: bool = True
) -> AsyncIterator[tuple[uvicorn.Server, asyncio.Task[None]]]:
    """``app`` listening on host:port until the block exits (or, with ``handle_signals``,
    uvicorn catches SIGINT/SIGTERM)."""
    check_port_free(host, port, what)
    config = uvicorn_config(app, host, port)
    server = uvicorn.Server(config) if handle_signals else SignalFreeServer(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if task.done():
                    await task
                    raise ServeError(f"{what}: the server stopped during startup")
                await asyncio.sleep(0.01)
        yield server, task
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve_engine_api(
    settings: Settings, view: EngineView, store: Store | None, *, port: int | None = None
) -> None:
    """Serve the engine API on ``port`` (default ``server.engine_port``) until interrupted."""
    app = create_app(view=view, authenticator=build_authenticator(settings, store))
    bind = settings.server.engine_port if port is None else port
    async with running_uvicorn(app, settings.server.host, bind, "engine API") as (_, task):
        await asyncio.shield(task)
