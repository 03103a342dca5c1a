"""The front process of ``mevstack up``: gateway REST, WebSocket and dashboard in a child process.

Hundreds of WebSocket clients (or a flood of them) cost CPU for every event fanned out and every
handshake; in the engine's own event loop that time comes out of block processing and the
engine's RPC calls.  So ``mevstack up`` runs the engine (and its API) in the main process and
everything clients connect to in one child started with ``multiprocessing``'s *spawn* (a fresh
interpreter: nothing of the engine's loop, threads or sockets is inherited).  The child is the
``mevstack gateway`` + ``mevstack dashboard`` of a multi-process deployment: the gateway reaches
the engine over HTTP (``server.backends``), and the events come over a socket pair from the
engine's bus (:mod:`mevstack.gateway.bridge`), so the in-memory bus still needs nothing else
installed.  The child runs at a lower CPU priority than the engine (``FRONT_NICENESS``).

Lifetime: :class:`FrontProcess` starts the child and waits until its ports listen (or reports
why they cannot, as one line); ``aclose`` asks it to stop with SIGTERM and kills it after a grace
period.  Ctrl-C reaches both processes; each shuts itself down.  If the engine process dies
without a word, the child sees the bridge close and exits: no orphan keeps the ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from multiprocessing.process import BaseProcess
from typing import Any

import orjson

from mevstack.api.server import ServeError, running_uvicorn
from mevstack.bus import Bus
from mevstack.config import Settings
from mevstack.errors import MevstackError
from mevstack.gateway.bridge import LINE_LIMIT, MirrorBus, follow_events, forward_events

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
# The front process yields the CPU to the engine when both want it: on a small machine a burst
# of client work (fan-out, handshakes) must not take a core from block processing.
FRONT_NICENESS = 5


def dashboard_app(settings: Settings) -> Any | None:
    """The dashboard app, or None (with a log line) when it cannot be served."""
    try:
        from mevstack.dashboard.server import Endpoints, create_dashboard_app

        return create_dashboard_app(Endpoints.from_settings(settings))
    except (ImportError, MevstackError) as exc:
        log.warning("dashboard: not served by `mevstack up` (%s)", exc)
        return None


class FrontProcess:
    """The child process serving the gateway, WebSocket and dashboard, fed by ``bus``."""

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.process: BaseProcess | None = None
        self.exited: asyncio.Task[None] | None = None
        self._bridge: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _spawn(self, process: BaseProcess) -> None:
        """Start ``process`` without the keystore password in its environment: the child faces
        the network and never signs (the engine read its key before the child starts)."""
        var = self.settings.execution.password_env
        password = os.environ.pop(var, None)
        try:
            process.start()
        finally:
            if password is not None:
                os.environ[var] = password

    async def start(self) -> asyncio.Task[None]:
        """Start the child and wait until it serves; returns the task that ends when it exits."""
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        process = context.Process(
            target=child_main, args=(self.settings, level, theirs), name="mevstack-front"
        )
        try:
            await asyncio.to_thread(self._spawn, process)  # spawning takes a while
        finally:
            theirs.close()
        self.process = process
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
        self._writer = writer
        exited = self.exited = asyncio.create_task(self._wait_exit(process), name="front-exit")
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                line = await reader.readline()
        except TimeoutError:
            await self.aclose()
            raise ServeError(f"front process not ready within {STARTUP_TIMEOUT_S:.0f} s") from None
        status = orjson.loads(line) if line else {"error": "the front process exited at startup"}
        if "error" in status:
            await self.aclose()
            raise ServeError(str(status["error"]))
        self._bridge = asyncio.create_task(forward_events(self.bus, writer), name="ws-bridge")
        self._bridge.add_done_callback(self._bridge_ended)
        return exited

    def _bridge_ended(self, task: asyncio.Task[None]) -> None:
        """A bridge that stops while the child runs would leave its clients without events:
        say why and close the socket, so the child exits and the stack stops (crash-only)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionError):
            log.error("event bridge to the front process failed: %r", exc)
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()

    @staticmethod
    async def _wait_exit(process: BaseProcess) -> None:
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        loop.add_reader(process.sentinel, exited.set)
        try:
            await exited.wait()
        finally:
            loop.remove_reader(process.sentinel)
        await asyncio.to_thread(process.join)
        if process.exitcode not in (0, None):
            log.warning("front process exited with code %s", process.exitcode)

    async def aclose(self) -> None:
        if self._bridge is not None:
            self._bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._bridge
        process = self.process
        if process is not None and process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        if self.exited is not None:
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await asyncio.shield(self.exited)
            except TimeoutError:
                log.warning("front process did not stop within %.0f s: killed", STOP_GRACE_S)
                if process is not None:
                    process.kill()
                await self.exited
        if self._writer is not None:
            self._writer.close()


# -- the child ------------------------------------------------------------------------------------


def child_main(settings: Settings, level: int, bridge: socket.socket) -> None:
    """Entry point of the spawned child (runs until SIGINT/SIGTERM or the bridge closes)."""
    from mevstack.obs.log import configure_logging

    os.nice(FRONT_NICENESS)
    configure_logging(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_front(settings, bridge))


async def _serve_front(settings: Settings, bridge: socket.socket) -> None:
    # Imported here: the engine process must not declare (and export as zeros) the gateway's
    # and WebSocket's metrics, which only this process has.
    from mevstack.gateway.server import running_gateway

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader, writer = await asyncio.open_unix_connection(sock=bridge, limit=LINE_LIMIT)
    server = settings.server
    mirror = MirrorBus()
    follower = asyncio.create_task(follow_events(reader, mirror), name="ws-bridge")
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                gateway = await stack.enter_async_context(
                    running_gateway(settings, bus=mirror, handle_signals=False)
                )
                tasks = [gateway.task]
                dashboard = dashboard_app(settings)
                if dashboard is not None:
                    _, task = await stack.enter_async_context(
                        running_uvicorn(
                            dashboard,
                            server.host,
                            server.dashboard_port,
                            "dashboard",
                            handle_signals=False,
                        )
                    )
                    tasks.append(task)
            except MevstackError as exc:
                writer.write(orjson.dumps({"error": str(exc)}) + b"\n")
                await writer.drain()
                return
            log.info("gateway on http://%s:%d/", server.host, server.gateway_port)
            log.info("WebSocket on ws://%s:%d", server.host, server.ws_port)
            if dashboard is not None:
                log.info("dashboard on http://%s:%d/", server.host, server.dashboard_port)
            writer.write(b'{"ready": true}\n')
            await writer.drain()
            # Stops on a signal, on a server ending, or when the engine side closes the bridge.
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, follower, *tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if follower.done() and not follower.cancelled():
                failure = follower.exception()
                if failure is None:
                    log.info("the engine process closed the event bridge; stopping")
                else:
                    log.error("event bridge failed (%s); stopping", failure)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower  # its failure, if any, was logged above
        await mirror.aclose()
        writer.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
