"""The engine backends behind the gateway: health checks, ordering for reads and for trades.

Each backend is polled on ``GET /health`` every ``interval`` seconds with a short timeout; a
request that cannot reach a backend marks it down at once (the poll brings it back), so a dead
engine stops receiving reads within one request, and a hung one within one poll period.

Reads go to the healthiest backend: healthy first, then the lowest smoothed latency (quantised,
so equal backends keep the configured preference order instead of flapping).  Trades go to the
backend whose /health says it holds the execution lease, else the first healthy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mevstack import jsonsafe
from mevstack.obs import metrics
from mevstack.obs.log import redact_text

BACKEND_UP = metrics.gauge(
    "mevstack_gateway_backend_up", "1 when the engine backend answers /health.", ["endpoint"]
)
FAILOVERS = metrics.counter(
    "mevstack_gateway_failovers_total",
    "Requests moved to another backend because one did not answer.",
)
_LATENCY_QUANTUM_S = 0.025  # differences below this are noise, not health
_EWMA = 0.3


@dataclass(slots=True)
class Backend:
    url: str
    index: int
    healthy: bool = True  # optimistic until the first check, so startup does not refuse reads
    latency_s: float = 0.0
    holds_lease: bool = False
    last_error: str | None = None
    checked_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, ok: bool, latency_s: float | None, error: str | None = None) -> None:
        self.healthy = ok
        self.last_error = None if ok else error
        self.checked_at = time.time()
        if latency_s is not None:
            self.latency_s = (
                latency_s
                if self.latency_s == 0
                else (1 - _EWMA) * self.latency_s + _EWMA * latency_s
            )
        BACKEND_UP.labels(endpoint=self.url).set(1 if ok else 0)

    def describe(self) -> dict[str, Any]:
        return {
            "url": redact_text(self.url),
            "healthy": self.healthy,
            "latency_s": round(self.latency_s, 6),
            "holds_lease": self.holds_lease,
            "last_error": self.last_error,
        }


class BackendPool:
    """The configured engines, in preference order, and the task that health-checks them."""

    def __init__(
        self,
        urls: list[str],
        client: httpx.AsyncClient,
        *,
        interval: float = 0.25,
        timeout: float = 0.5,
    ) -> None:
        self.backends = [Backend(url.rstrip("/"), i) for i, url in enumerate(urls)]
        self.client = client
        self.interval = interval
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="gateway-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(b) for b in self.backends))

    async def check(self, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            answer = await self.client.get(f"{backend.url}/health", timeout=self.timeout)
            body = jsonsafe.loads(answer.content)
        except (httpx.HTTPError, ValueError) as exc:
            # an engine that cannot be reached must not keep advertising its last lease claim
            backend.holds_lease = False
            backend.record(False, None, type(exc).__name__)
            return
        elapsed = time.perf_counter() - started
        status = body.get("status") if isinstance(body, dict) else None
        ok = answer.status_code == 200 and status in ("ok", "degraded")
        backend.holds_lease = bool(isinstance(body, dict) and body.get("lease") is True)
        backend.record(ok, elapsed, None if ok else f"health status {status!r}")

    def mark_down(self, backend: Backend, error: BaseException) -> None:
        backend.record(
            False, None, str(error) if isinstance(error, RuntimeError) else type(error).__name__
        )

    def for_reads(self) -> list[Backend]:
        return sorted(
            self.backends,
            key=lambda b: (not b.healthy, round(b.latency_s / _LATENCY_QUANTUM_S), b.index),
        )

    def for_trades(self) -> list[Backend]:
        return sorted(self.backends, key=lambda b: (not b.healthy, not b.holds_lease, b.index))

    @property
    def any_healthy(self) -> bool:
        return any(b.healthy for b in self.backends)

    def status(self) -> str:
        up = sum(b.healthy for b in self.backends)
        if up == len(self.backends):
            return "ok"
        return "degraded" if up else "down"
