"""The Engine: settings → bus, store, one ChainRuntime per chain, the agent supervisor; and the
:class:`~mevstack.api.view.EngineView` the engine API reads.

``running_engine`` serves the engine API (the services team's app factory) with uvicorn;
``running_stack`` is ``mevstack up``: engine, gateway, WebSocket and dashboard in one process on
one bus (a memory bus only reaches subscribers of the same object, so the gateway's WebSocket
must be fed by the engine's bus instance).  ``serve`` runs either until SIGINT/SIGTERM and
shuts down in order: HTTP servers, agents, chains, bus, store.

Scans run inline by default: measured on this 2-core machine (``bench/bench_engine.py``), the
worker process (:mod:`mevstack.engine.scan_process`) made block-to-opportunity latency worse
(IPC, pickling, a cold second interpreter competing for the same cores) without lowering the
event-loop stalls much at devnet size; ``scan_in_process=True`` (``--scan-process``) is there
for larger pool sets on machines with cores to spare.

Execution is not wired here yet: ``execute`` answers 503 ``not_available`` (observe only), and
exploit alerts likewise; every other view method answers from live state or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from mevstack.api.app import create_app
from mevstack.api.server import ServeError, build_authenticator, check_port_free, open_store
from mevstack.api.store_view import StoreView
from mevstack.api.view import BadRequest, JsonObject, NotAvailable, NotFound
from mevstack.bus import Bus, open_bus
from mevstack.config import Settings
from mevstack.engine.agents import AgentSupervisor
from mevstack.engine.chain_runtime import ChainRuntime, Retention
from mevstack.engine.scan_process import ScanProcess
from mevstack.errors import MevstackError
from mevstack.events import EventName
from mevstack.execution.risk import RiskConfigError
from mevstack.execution.trading_state import TradingState
from mevstack.gateway.server import build_limiter
from mevstack.store import Store

log = logging.getLogger(__name__)


class Engine(StoreView):
    """Every configured chain running in this process; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus,
        store: Store,
        source: str = "engine",
        standby: bool = False,
        retention: Retention | None = None,
        scan_in_process: bool = False,
    ) -> None:
        super().__init__(store, source)
        self.settings = settings
        self.bus = bus
        self.standby = standby
        self.supervisor = AgentSupervisor()
        self.trading = TradingState.load(store, settings)
        self.scan_process = ScanProcess() if scan_in_process and settings.chains else None
        self.runtimes: dict[str, ChainRuntime] = {}
        for chain in settings.chains:
            runtime = ChainRuntime(
                chain,
                publish=self._publish,
                store=store,
                retention=retention,
                scan_process=self.scan_process,
            )
            runtime.register(self.supervisor)
            self.runtimes[chain.name] = runtime
        self._started = False

    async def _publish(self, event: EventName, chain: str | None, data: dict[str, Any]) -> None:
        await self.bus.publish(event, chain, data)

    async def start(self) -> Engine:
        for runtime in self.runtimes.values():
            await runtime.start()
        await self.supervisor.start_all()
        self._started = True
        return self

    async def stop(self) -> None:
        await self.supervisor.stop_all()
        for runtime in self.runtimes.values():
            await runtime.aclose()
        if self.scan_process is not None:
            await asyncio.to_thread(self.scan_process.close)
        self._started = False

    # -- EngineView ----------------------------------------------------------------------------

    def health(self) -> JsonObject:
        return {
            "role": "standby" if self.standby else "primary",
            "chains": {name: r.status()["market_block"] for name, r in self.runtimes.items()},
        }

    def nodes(self) -> list[JsonObject]:
        return [s.to_json() for r in self.runtimes.values() for s in r.services.monitor.statuses()]

    def gas(self) -> list[JsonObject]:
        return [
            r.services.gas.last.to_json()
            for r in self.runtimes.values()
            if r.services.gas.last is not None
        ]

    async def execute(self, opportunity_id: str, idempotency_key: str | None) -> JsonObject:
        raise NotAvailable("execution is not wired into the engine yet (it only observes)")

    async def metrics_summary(self) -> JsonObject:
        return {
            "chains": [r.status() for r in self.runtimes.values()],
            "agents": await self.agents(),
        }

    async def trading_state(self) -> JsonObject:
        return self.trading.snapshot()

    async def patch_trading_state(self, changes: JsonObject) -> JsonObject:
        patch = {k: v for k, v in changes.items() if v is not None}
        try:
            await asyncio.to_thread(self.trading.apply_patch, patch, actor="api")
        except RiskConfigError as exc:
            raise BadRequest(str(exc)) from None
        return self.trading.snapshot()

    async def agents(self) -> list[JsonObject]:
        out: list[JsonObject] = []
        for agent in self.supervisor.all():
            status = agent.status()
            runtime = self.runtimes.get(agent.chain)
            if runtime is not None:
                status["scan"] = runtime.scan_times.to_json()
            out.append(status)
        return out

    async def set_agent_running(self, agent_id: str, running: bool) -> JsonObject:
        agent = self.supervisor.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}")
        if running:
            await agent.start()
        else:
            await agent.stop()
        return agent.status()


# -- serving ------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class EngineProcess:
    engine: Engine
    servers: list[uvicorn.Server]
    tasks: list[asyncio.Task[None]]


async def _serve_app(app: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name=f"http-{port}")
    while not server.started:
        if task.done():
            await task
            raise ServeError(f"the HTTP server on {host}:{port} stopped during startup")
        await asyncio.sleep(0.01)  # uvicorn offers no startup event to wait on
    return server, task


async def _stop_servers(servers: list[uvicorn.Server], tasks: list[asyncio.Task[None]]) -> None:
    for server in servers:
        server.should_exit = True
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings,
    *,
    port: int | None = None,
    standby: bool = False,
    bus: Bus | None = None,
    scan_in_process: bool = False,
) -> AsyncIterator[EngineProcess]:
    """The engine and its API listening on ``port``; everything stopped and closed on exit."""
    server = settings.server
    if port is None:
        port = server.standby_port if standby else server.engine_port
    if port != 0:
        check_port_free(server.host, port, "engine")
    store = open_store(settings)
    own_bus = bus is None
    the_bus = open_bus(settings.bus.url) if bus is None else bus
    engine = Engine(
        settings,
        bus=the_bus,
        store=store,
        source=f"engine@{server.host}:{port}",
        standby=standby,
        scan_in_process=scan_in_process,
    )
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await engine.start()
        app = create_app(view=engine, authenticator=build_authenticator(settings, store))
        http, task = await _serve_app(app, server.host, port)
        servers.append(http)
        tasks.append(task)
        log.info("engine API listening on %s:%d", server.host, port)
        yield EngineProcess(engine, servers, tasks)
    finally:
        await _stop_servers(servers, tasks)
        await engine.stop()
        if own_bus:
            await the_bus.aclose()
        store.close()


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, scan_in_process: bool = False
) -> AsyncIterator[EngineProcess]:
    """``mevstack up``: engine + gateway (REST) + WebSocket + dashboard in one process, on one
    bus.  A dashboard that cannot be served (not installed) is skipped with a log line."""
    import os

    from mevstack.gateway.app import Gateway, GatewayOptions
    from mevstack.gateway.ratelimit import limits_from_env
    from mevstack.gateway.ws import WsServer

    server = settings.server
    check_port_free(server.host, server.gateway_port, "gateway")
    check_port_free(server.host, server.ws_port, "websocket")
    dashboard = _dashboard_app(settings)
    if dashboard is not None:
        check_port_free(server.host, server.dashboard_port, "dashboard")
    bus = open_bus(settings.bus.url)
    try:
        async with running_engine(settings, bus=bus, scan_in_process=scan_in_process) as process:
            authenticator = build_authenticator(settings, process.engine.store)
            gateway = Gateway(
                GatewayOptions(
                    backends=list(server.backends),
                    cors_origins=list(server.cors_origins),
                    limits=limits_from_env(os.environ),
                ),
                authenticator,
                limiter=build_limiter(settings),
            )
            ws = WsServer(bus, authenticator, cors_origins=server.cors_origins)
            await ws.start(server.host, server.ws_port)
            try:
                for app, port, what in (
                    (gateway.app, server.gateway_port, "gateway"),
                    (dashboard, server.dashboard_port, "dashboard"),
                ):
                    if app is None:
                        continue
                    http, task = await _serve_app(app, server.host, port)
                    process.servers.append(http)
                    process.tasks.append(task)
                    log.info("%s on http://%s:%d/", what, server.host, port)
                log.info("WebSocket on ws://%s:%d", server.host, server.ws_port)
                yield process
            finally:
                await _stop_servers(process.servers, process.tasks)
                await ws.aclose()
    finally:
        await bus.aclose()


def _dashboard_app(settings: Settings) -> Any | None:
    try:
        from mevstack.dashboard.server import Endpoints, create_dashboard_app

        return create_dashboard_app(Endpoints.from_settings(settings))
    except (ImportError, MevstackError) as exc:
        log.warning("dashboard: not served by `mevstack up` (%s)", exc)
        return None


async def serve(stack: contextlib.AbstractAsyncContextManager[EngineProcess]) -> None:
    """Run until SIGINT/SIGTERM (or a server dies), then shut everything down in order."""
    # One INFO line per JSON-RPC request would drown everything else the engine says.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with stack as process:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *process.tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
