"""The engine's watch over itself: metrics from its events, and the alerts a person must see.

:class:`EngineWatch` receives every event the engine publishes (the engine calls
:meth:`EngineWatch.on_event` beside each publish), feeds the Prometheus metrics
(:class:`~mevstack.obs.engine_metrics.EventMetrics`) and the pure
:class:`~mevstack.obs.conditions.ConditionTracker`, and once a ``interval`` evaluates the
conditions against the trading state's facts.  A condition raised is a WARNING log line and,
for the kinds nobody else announces, a webhook notification; a condition cleared is an INFO line.
:meth:`EngineWatch.alerts` is what the API serves (``alerts`` in ``GET /api/trading/state``) and
the dashboard's banner shows.

The kill switch and a chain without a healthy node already reach the webhooks from their owners
(the trading-state PATCH and the node-status notices), so they are shown here but not sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mevstack.errors import MevstackError
from mevstack.obs.conditions import Condition, ConditionTracker, Facts
from mevstack.obs.engine_metrics import EventMetrics

log = logging.getLogger("mevstack.alerts")

# kinds this watch sends to the webhooks (the others have an owner that already does)
NOTIFIED = frozenset({"chain_not_trading", "trades_failing", "balance_low"})

Notify = Callable[[str, str | None, str, dict[str, Any], str], Awaitable[None]]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EngineWatch:
    """See the module docstring."""

    def __init__(
        self,
        *,
        windows: Mapping[str, float],
        facts: Callable[[], Facts],
        notify: Notify | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = EventMetrics()
        self.tracker = ConditionTracker(windows)
        self.facts = facts
        self.notify = notify
        self.interval = interval
        self.clock = clock
        self._episodes: dict[tuple[str, str | None], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def on_event(self, event: str, chain: str | None, data: Mapping[str, Any]) -> None:
        """Called for every event the engine publishes; never raises into the publisher."""
        try:
            self.metrics.on_event(event, chain, data)
            self.tracker.on_event(event, chain, data, self.clock())
        except Exception:  # a metrics bug must not stop the engine publishing
            log.exception("watch: event %s not counted", event)

    async def evaluate(self) -> list[Condition]:
        """One evaluation: log and notify what was raised, log what cleared; returns raised."""
        change = self.tracker.evaluate(self.facts(), self.clock())
        for condition in change.cleared:
            log.info(
                "alert cleared: %s%s",
                condition.kind,
                f" on {condition.chain}" if condition.chain else "",
                extra={"alert": condition.kind, "chain": condition.chain},
            )
        for condition in change.raised:
            log.warning(
                "alert: %s%s: %s",
                condition.kind,
                f" on {condition.chain}" if condition.chain else "",
                condition.message,
                extra={"alert": condition.kind, "chain": condition.chain},
            )
            episode = self._episodes[condition.key] = self._episodes.get(condition.key, 0) + 1
            if self.notify is not None and condition.kind in NOTIFIED:
                # sent beside the watch: a slow webhook (retries, backoff) must not hold it
                task = asyncio.create_task(self._send(condition, episode))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
        return change.raised

    async def _send(self, condition: Condition, episode: int) -> None:
        assert self.notify is not None
        key = f"{condition.kind}:{condition.chain}:{episode}"
        try:
            await self.notify(
                condition.kind, condition.chain, condition.message, dict(condition.details), key
            )
        except MevstackError as exc:
            log.warning("alert %s not sent: %s", condition.kind, exc)
        except Exception:
            log.exception("alert %s not sent", condition.kind)

    def alerts(self) -> list[dict[str, Any]]:
        """The active conditions as JSON, kill switch first."""
        return [
            {
                "kind": condition.kind,
                "chain": condition.chain,
                "message": condition.message,
                "since": _iso(since),
            }
            for condition, since in self.tracker.active()
        ]

    async def _run(self) -> None:
        while True:
            try:
                await self.evaluate()
            except Exception:  # one bad evaluation must not end the watch
                log.exception("watch: evaluation failed")
            await asyncio.sleep(self.interval)  # the evaluation cadence

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="engine-watch")

    async def aclose(self) -> None:
        tasks = [*self._sends, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
