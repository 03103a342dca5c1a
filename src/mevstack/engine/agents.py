"""Agents: one (strategy, chain) pair running continuously with a lifecycle the operator can see.

An agent owns a bounded inbox of work items (usually new blocks), a worker built by a factory, and
its public status: state, heartbeat, counters, lag and last error.  A worker that raises is rebuilt
from the factory and restarted with exponential backoff; after too many crashes in a window the
agent is reported ``failed`` and stays down until started again.  Nothing here blocks the event
loop: the worker's ``handle`` is awaited, and CPU time per item is measured so that a worker whose
work is heavy shows it.

When the inbox is full the oldest pending item is replaced by the newest and the replacement is
counted (``coalesced``): for block-driven strategies only the latest state matters, and the count
makes the lag visible instead of silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from mevstack.events import EventName, utc_now_iso

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)


class AgentState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class Worker(Protocol[Item_contra]):
    """What an agent runs for each item; returns how many results (e.g. opportunities) it made."""

    async def handle(self, item: Item_contra) -> int: ...


Publish = Callable[[EventName, str | None, dict[str, Any]], Awaitable[object]]


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_crashes: int = 5  # crashes within `window_s` that mark the agent failed
    window_s: float = 300.0

    def backoff(self, consecutive: int) -> float:
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, consecutive - 1)))


@dataclass
class AgentCounters:
    items: int = 0
    results: int = 0
    crashes: int = 0
    restarts: int = 0
    coalesced: int = 0
    cpu_seconds: float = 0.0
    last_cpu_ms: float = 0.0


@dataclass
class Agent(Generic[Item]):
    """A supervised worker with a bounded inbox.  ``id`` is ``"<strategy>:<chain>"``."""

    strategy: str
    chain: str
    factory: Callable[[], Worker[Item]]
    publish: Publish | None = None
    inbox_size: int = 8
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    position: Callable[[Item], int] | None = None  # e.g. an item's block number, for lag
    state: AgentState = AgentState.STOPPED
    counters: AgentCounters = field(default_factory=AgentCounters)
    last_error: str | None = None
    heartbeat_at: str | None = None
    last_position: int | None = None
    _inbox: deque[Item] = field(default_factory=deque, init=False, repr=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _resume: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _crash_times: deque[float] = field(default_factory=deque, init=False, repr=False)
    _newest_position: int | None = field(default=None, init=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.strategy}:{self.chain}"

    @property
    def lag(self) -> int:
        """Items waiting, or positions (blocks) behind the newest one offered, whichever is more."""
        behind = 0
        if self._newest_position is not None and self.last_position is not None:
            behind = self._newest_position - self.last_position
        return max(len(self._inbox), behind)

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "id": self.id,
            "strategy": self.strategy,
            "chain": self.chain,
            "state": self.state.value,
            "heartbeat_at": self.heartbeat_at,
            "lag": self.lag,
            "queue_depth": len(self._inbox),
            "last_position": self.last_position,
            "counters": {
                "items": c.items,
                "results": c.results,
                "crashes": c.crashes,
                "restarts": c.restarts,
                "coalesced": c.coalesced,
                "cpu_seconds": round(c.cpu_seconds, 6),
                "last_cpu_ms": round(c.last_cpu_ms, 3),
            },
            "last_error": self.last_error,
        }

    def offer(self, item: Item) -> None:
        """Queue an item without ever blocking the producer (see the module docstring)."""
        if self.position is not None:
            self._newest_position = self.position(item)
        if len(self._inbox) >= self.inbox_size:
            self._inbox.popleft()
            self.counters.coalesced += 1
        self._inbox.append(item)
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            if self.state is AgentState.PAUSED:
                await self.resume()
            return
        self._crash_times.clear()
        self.last_error = None
        self._resume.set()
        await self._set_state(AgentState.STARTING)
        self._task = asyncio.create_task(self._supervise(), name=f"agent {self.id}")

    async def pause(self) -> None:
        if self.state in (AgentState.RUNNING, AgentState.STARTING):
            self._resume.clear()
            await self._set_state(AgentState.PAUSED)

    async def resume(self) -> None:
        if self.state is AgentState.PAUSED:
            self._resume.set()
            await self._set_state(AgentState.RUNNING)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.state is not AgentState.FAILED:
            await self._set_state(AgentState.STOPPED)

    async def _set_state(self, state: AgentState) -> None:
        self.state = state
        self.heartbeat_at = utc_now_iso()
        if self.publish is not None:
            await self.publish(EventName.AGENT_STATUS, self.chain, self.status())

    async def _supervise(self) -> None:
        consecutive = 0
        while True:
            worker = self.factory()
            if self.state is AgentState.STARTING:
                await self._set_state(AgentState.RUNNING)
            try:
                await self._run(worker)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a strategy bug must not take the engine down
                consecutive += 1
                now = time.monotonic()
                self.counters.crashes += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._crash_times.append(now)
                while self._crash_times and now - self._crash_times[0] > self.policy.window_s:
                    self._crash_times.popleft()
                if len(self._crash_times) >= self.policy.max_crashes:
                    await self._set_state(AgentState.FAILED)
                    return
                await self._set_state(AgentState.STARTING)
                await asyncio.sleep(self.policy.backoff(consecutive))  # restart backoff
                self.counters.restarts += 1

    async def _run(self, worker: Worker[Item]) -> None:
        while True:
            await self._resume.wait()
            if not self._inbox:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._inbox.popleft()
            started = time.thread_time()
            results = await worker.handle(item)
            spent = time.thread_time() - started
            c = self.counters
            c.items += 1
            c.results += results
            c.cpu_seconds += spent
            c.last_cpu_ms = spent * 1000
            if self.position is not None:
                self.last_position = self.position(item)
            self.heartbeat_at = utc_now_iso()


class AgentSupervisor:
    """All agents of one engine process, addressable by id (``"arbitrage:ethereum"``)."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent[Any]] = {}

    def add(self, agent: Agent[Any]) -> None:
        if agent.id in self._agents:
            raise ValueError(f"agent {agent.id} already exists")
        self._agents[agent.id] = agent

    def get(self, agent_id: str) -> Agent[Any] | None:
        return self._agents.get(agent_id)

    def all(self) -> list[Agent[Any]]:
        return list(self._agents.values())

    def statuses(self) -> list[dict[str, Any]]:
        return [a.status() for a in self._agents.values()]

    async def start_all(self) -> None:
        for agent in self._agents.values():
            await agent.start()

    async def stop_all(self) -> None:
        for agent in self._agents.values():
            await agent.stop()
