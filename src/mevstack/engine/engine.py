"""The Engine: settings → bus, store, one ChainRuntime per chain, the agent supervisor; and the
:class:`~mevstack.api.view.EngineView` the engine API reads.

``running_engine`` serves the engine API (the app factory of api/) with uvicorn;
``running_stack`` is ``mevstack up``: the engine here, and the gateway, WebSocket and dashboard
in a child process that the engine's bus feeds over a socket (:mod:`mevstack.gateway.front`), so
client load never runs in the engine's event loop.  ``serve`` runs either until SIGINT/SIGTERM
and shuts down in order: the front process, HTTP servers, agents, chains, bus, store.

Scans run inline by default: measured on this 2-core machine (``bench/bench_engine.py``), the
worker process (:mod:`mevstack.engine.scan_process`) made block-to-opportunity latency worse
(IPC, pickling, a cold second interpreter competing for the same cores) without lowering the
event-loop stalls much at devnet size; ``scan_in_process=True`` (``--scan-process``) is there
for larger pool sets on machines with cores to spare.

Execution (:mod:`mevstack.engine.execution_runtime`) runs on every chain with an ``executor``
once the operator keystore opens; without one the engine still observes and ``execute`` answers
503 saying why.  One execution lease per engine: local on a memory bus, Redis on a Redis bus
(``--standby`` replicas contend too and only sign while holding it; ``health()["lease"]`` tells
the gateway which replica that is).  The exploit feed (:mod:`mevstack.engine.exploit_runtime`)
feeds the trading state's blocklist, which every ChainRuntime's scans obey.  Configured webhooks
hear of the kill switch, a daily loss limit reached, and the lease moving (besides the exploit
feed's own alerts).  :class:`~mevstack.obs.watch.EngineWatch` sees every event the engine publishes:
it feeds the chain and trading metrics of ``/metrics`` and says when a chain cannot trade
(``alerts`` in the trading state, webhooks, log lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn

from mevstack.api.app import create_app
from mevstack.api.server import (
    ServeError,
    SignalFreeServer,
    build_authenticator,
    check_port_free,
    open_store,
    uvicorn_config,
)
from mevstack.api.store_view import StoreView
from mevstack.api.view import BadRequest, Conflict, JsonObject, NotAvailable, NotFound
from mevstack.bus import Bus, open_bus
from mevstack.config import Settings
from mevstack.engine.agents import AgentSupervisor
from mevstack.engine.chain_runtime import ChainRuntime, Retention
from mevstack.engine.execution_runtime import ChainExecution, lease_held, open_lease
from mevstack.engine.exploit_runtime import ExploitRuntime
from mevstack.engine.scan_process import ScanProcess
from mevstack.errors import MevstackError
from mevstack.events import EventName, utc_now_iso
from mevstack.execution.keys import load_operator_account
from mevstack.execution.lease import RedisLease
from mevstack.execution.risk import RiskConfigError
from mevstack.execution.trading_state import TradingState
from mevstack.gateway.front import FrontProcess, dashboard_app
from mevstack.obs import engine_metrics
from mevstack.obs.conditions import ChainFacts, Facts, not_trading_window
from mevstack.obs.watch import EngineWatch
from mevstack.store import Store
from mevstack.strategy.opportunity import Opportunity

log = logging.getLogger(__name__)
admin_log = logging.getLogger("mevstack.audit")


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
        lease_name: str = "mevstack:execution-lease",
        lease_ttl_ms: int = 3000,
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
        self.lease = open_lease(
            settings,
            name=lease_name,
            holder=source,
            on_acquire=self._on_lease,
            epoch_floor=lambda: asyncio.to_thread(store.max_fencing_epoch),
            ttl_ms=lease_ttl_ms,
            standby=standby,
        )
        self._lease_task: asyncio.Task[None] | None = None
        self.executions: dict[str, ChainExecution] = {}
        self.execution_missing: str | None = None
        self.exploits_runtime: ExploitRuntime | None = None
        for name, runtime in self.runtimes.items():
            runtime.blocked_tokens = self._blocked(name, "token")
            runtime.blocked_pools = self._blocked(name, "pool")
        self.watch = EngineWatch(
            windows={c.name: not_trading_window(c.block_time) for c in settings.chains},
            facts=self._facts,
            notify=lambda kind, chain, message, details, key: self.notify(
                kind, chain, message, details, key=key
            ),
        )

    def _facts(self) -> Facts:
        """What the watch needs from the trading state; also refreshes the auto-trading gauge."""
        holds = bool(self.executions) and lease_held(self.lease)
        auto = holds and self.trading.mode == "live" and self.trading.auto_execute
        chains: dict[str, ChainFacts] = {}
        for name in self.runtimes:
            trading = auto and name in self.executions
            engine_metrics.AUTO_TRADING.labels(chain=name).set(1 if trading else 0)
            chains[name] = ChainFacts(
                auto_trading=trading,
                low_balances=tuple(self.trading.low_balances(name)),
                symbol=self.trading.symbols.get(name, "native"),
            )
        return Facts(self.trading.kill_switch, self.trading.kill_reason, chains)

    def _blocked(self, chain: str, kind: str) -> Callable[[], frozenset[str]]:
        def blocked() -> frozenset[str]:
            return frozenset(
                e.address.lower()
                for e in self.trading.active_blocklist()
                if e.kind == kind and (e.chain is None or e.chain == chain)
            )

        return blocked

    async def _on_lease(self, epoch: int) -> None:
        """A new holder resolves the old holder's in-flight trades before it signs anything."""
        # The old holder served the admin writes (the gateway routes them to the lease holder):
        # its kill switch, mode and limits are in the shared store, not yet in our memory.
        await asyncio.to_thread(self.trading.reload)
        for execution in self.executions.values():
            changed = await execution.tracker.reconcile()
            if changed:
                log.info("chain %s: reconciled %d in-flight trades", execution.name, len(changed))
        log.info("execution lease epoch %d held by %s", epoch, self.source)
        if isinstance(self.lease, RedisLease):
            await self.notify(
                "lease_moved",
                None,
                f"execution lease epoch {epoch} taken by {self.source}",
                {"epoch": epoch, "holder": self.source},
                key=f"lease_moved:{epoch}",
            )

    async def notify(
        self, kind: str, chain: str | None, message: str, details: JsonObject, *, key: str
    ) -> None:
        """A notification to the configured webhooks (none configured: nothing)."""
        runtime = self.exploits_runtime
        if runtime is None or runtime.notifier is None:
            return
        try:
            await runtime.notifier.notify(kind, chain, message, details, dedup_key=key)
        except MevstackError as exc:
            log.warning("notification %s not sent: %s", kind, exc)

    async def _on_paused(self, chain: str, reason: str) -> None:
        if reason.startswith("daily loss"):
            await self.notify(
                "daily_loss_limit",
                chain,
                f"chain paused: {reason}",
                {"reason": reason},
                key=f"daily_loss_limit:{chain}:{self.trading.pnl_day}",
            )

    async def _start_execution(self) -> None:
        wanted = [c for c in self.settings.chains if c.executor is not None]
        if not wanted:
            self.execution_missing = "no chain has an executor configured (chains.executor)"
            return
        try:
            account = await asyncio.to_thread(load_operator_account, self.settings)
        except MevstackError as exc:
            self.execution_missing = f"execution is off: {exc}"
            log.warning("%s", self.execution_missing)
            return
        for config in wanted:
            runtime = self.runtimes[config.name]
            execution = ChainExecution(
                config,
                pools=lambda runtime=runtime: runtime.market.pools,  # type: ignore[misc]
                endpoints=[runtime.services.pool],
                rpc=runtime.services.pool,
                store=self.store,
                state=self.trading,
                lease=self.lease,
                account=account,
                publish=self._publish_trade,
                gas_tip=lambda runtime=runtime: _tip(runtime),  # type: ignore[misc]
                on_paused=self._on_paused,
                backruns=runtime.backruns.get,
            )
            runtime.opportunity_listeners.append(self._auto_listener(execution))
            self.executions[config.name] = execution
        if isinstance(self.lease, RedisLease):
            self._lease_task = asyncio.create_task(self.lease.run(), name="execution-lease")
        else:
            await self._on_lease(1)
        for execution in self.executions.values():
            execution.start()
        log.info(
            "execution on %s as %s (mode %s)",
            ", ".join(self.executions),
            account.address,
            self.trading.mode,
        )

    @staticmethod
    def _auto_listener(execution: ChainExecution) -> Callable[[list[Opportunity]], None]:
        def listen(changes: list[Opportunity]) -> None:
            for opportunity in changes:
                if opportunity.status == "expired":
                    execution.withdraw(opportunity.id)
                else:
                    execution.offer(opportunity)

        return listen

    async def _publish_trade(self, name: str, chain: str | None, data: Mapping[str, Any]) -> None:
        self.watch.on_event(name, chain, data)
        await self.bus.publish(EventName(name), chain, dict(data))

    async def _publish(self, event: EventName, chain: str | None, data: dict[str, Any]) -> None:
        self.watch.on_event(event.value, chain, data)
        await self.bus.publish(event, chain, data)

    async def start(self) -> Engine:
        for runtime in self.runtimes.values():
            await runtime.start()
        await self.supervisor.start_all()
        await self._start_execution()
        self.exploits_runtime = ExploitRuntime.create(self)
        if self.exploits_runtime is not None:
            await self.exploits_runtime.start()
        self.watch.start()
        self._started = True
        return self

    async def stop(self) -> None:
        await self.watch.aclose()
        if self.exploits_runtime is not None:
            await self.exploits_runtime.aclose()
        for execution in self.executions.values():
            await execution.aclose()
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
            self._lease_task = None
        if isinstance(self.lease, RedisLease):
            # released so a standby need not wait out the TTL; bounded: Redis may be gone
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.lease.release()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.lease.redis.aclose()
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
            "lease": bool(self.executions) and lease_held(self.lease),
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
        for name, runtime in self.runtimes.items():
            opportunity = runtime.book.active.get(opportunity_id) or runtime.backruns.get(
                opportunity_id
            )
            if opportunity is None:
                continue
            execution = self.executions.get(name)
            if execution is None:
                why = self.execution_missing or f"chain {name} has no executor configured"
                raise NotAvailable(why)
            return await execution.execute(opportunity, idempotency_key)
        stored = await asyncio.to_thread(self.store.get_opportunity, opportunity_id)
        if stored is None:
            raise NotFound(f"no opportunity {opportunity_id!r}")
        execution = self.executions.get(str(stored.get("chain")))
        if execution is not None and idempotency_key is not None:
            repeated = execution.repeated(idempotency_key)
            if repeated is not None:
                return repeated
        if execution is not None:
            existing = execution.trade_for(opportunity_id)
            if existing is not None:
                return existing
        raise Conflict(
            f"opportunity {opportunity_id} is {stored.get('status')}, no longer live: "
            "nothing to execute"
        )

    async def metrics_summary(self) -> JsonObject:
        return {
            "chains": [r.status() for r in self.runtimes.values()],
            "agents": await self.agents(),
        }

    async def trading_state(self) -> JsonObject:
        if not self.health().get("lease"):
            # Admin writes go to the lease holder; a replica without it shows the shared state.
            await asyncio.to_thread(self.trading.reload)
        return {**self.trading.snapshot(), "alerts": self.watch.alerts()}

    async def patch_trading_state(self, changes: JsonObject) -> JsonObject:
        patch = {k: v for k, v in changes.items() if v is not None}
        engaging = patch.get("kill_switch") is True and not self.trading.kill_switch
        try:
            await asyncio.to_thread(self.trading.apply_patch, patch, actor="api")
        except RiskConfigError as exc:
            raise BadRequest(str(exc)) from None
        if engaging:
            reason = str(patch.get("reason") or "no reason given")
            await self.notify(
                "kill_switch",
                None,
                f"kill switch engaged: {reason}",
                {"reason": reason},
                key=f"kill_switch:{utc_now_iso()}",
            )
        # the answer shows the alerts the change raised or cleared (the kill switch at once)
        await self.watch.evaluate()
        return {**self.trading.snapshot(), "alerts": self.watch.alerts()}

    async def agents(self) -> list[JsonObject]:
        out: list[JsonObject] = []
        for agent in self.supervisor.all():
            status = agent.status()
            runtime = self.runtimes.get(agent.chain)
            if runtime is not None:
                status["scan"] = runtime.scan_times.to_json()
            out.append(status)
        return out

    async def exploits(self) -> list[JsonObject]:
        if self.exploits_runtime is None:
            raise NotAvailable("the exploit feed is off (see the [exploits] config)")
        return await self.exploits_runtime.service.exploits()

    async def add_exploit(self, alert: JsonObject) -> JsonObject:
        if self.exploits_runtime is None:
            raise NotAvailable("the exploit feed is off (see the [exploits] config)")
        added = await self.exploits_runtime.service.add_exploit(alert, actor="api")
        admin_log.info(
            "exploit alert %s added by api",
            added.get("id"),
            extra={
                "actor": "api",
                "action": "exploits.add",
                "details": {k: added.get(k) for k in ("id", "chain", "severity", "blocked")},
            },
        )
        return added

    async def set_agent_running(self, agent_id: str, running: bool) -> JsonObject:
        agent = self.supervisor.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}")
        if running:
            await agent.start()
        else:
            await agent.stop()
        action = "agents.start" if running else "agents.stop"
        admin_log.info(
            "%s %s by api",
            action,
            agent_id,
            extra={"actor": "api", "action": action, "details": {"agent": agent_id}},
        )
        return agent.status()


def _tip(runtime: ChainRuntime) -> int | None:
    quote = runtime.services.gas.last
    return None if quote is None else quote.priority_fee_p50


# -- serving ------------------------------------------------------------------------------------


@dataclass
class EngineProcess:
    engine: Engine
    servers: list[uvicorn.Server]
    tasks: list[asyncio.Task[None]]


async def _serve_app(app: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = SignalFreeServer(uvicorn_config(app, host, port))
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
        app = create_app(
            view=engine,
            authenticator=build_authenticator(settings, store),
            chains=[chain.name for chain in settings.chains],
        )
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
    """``mevstack up``: the engine and its API here; gateway (REST), WebSocket and dashboard in
    a child process (:mod:`mevstack.gateway.front`) fed with this bus's events.  A dashboard
    that cannot be served (not installed) is skipped with a log line."""
    server = settings.server
    # Checked before the engine starts so a taken port fails fast, not after chain start-up.
    check_port_free(server.host, server.gateway_port, "gateway")
    check_port_free(server.host, server.ws_port, "WebSocket")
    if dashboard_app(settings) is not None:
        check_port_free(server.host, server.dashboard_port, "dashboard")
    bus = open_bus(settings.bus.url)
    try:
        async with running_engine(settings, bus=bus, scan_in_process=scan_in_process) as process:
            front = FrontProcess(settings, bus)
            exited = await front.start()
            # serve() returns when any of these ends, so a dead front process stops the stack too.
            process.tasks.append(exited)
            try:
                yield process
            finally:
                process.tasks.remove(exited)
                await front.aclose()
    finally:
        await bus.aclose()


async def serve(
    stack: contextlib.AbstractAsyncContextManager[EngineProcess],
    *,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or a server dies), then shut everything down in order;
    ``on_ready`` runs once every server of the stack is listening."""
    # One INFO line per JSON-RPC request would drown everything else the engine says.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with stack as process:
            if on_ready is not None:
                on_ready()
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *process.tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
