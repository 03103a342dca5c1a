"""Node monitor: a NodeStatus per endpoint after every probe round, published as ``node.status``.

The endpoint pool probes at least once per block time (``EndpointPool.probe_interval``); this module
turns each round into NodeStatus objects (docs/contracts.md) and hands them to a publisher (any
``async def publish(event, chain, data)``, e.g. the bus). URLs are always the redacted form.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mevstack.chain.endpoints import Endpoint, EndpointPool
from mevstack.chain.health import NodeState
from mevstack.events import EventName, utc_now_iso

Publisher = Callable[[EventName, str | None, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    chain: str
    chain_id: int  # the configured chain id; node_chain_id is what the node says
    url: str
    state: NodeState
    head_block: int | None
    head_age_s: float | None
    lag_blocks: int
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    error_rate: float
    peers: int | None
    is_primary: bool
    checked_at: str
    node_chain_id: int | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "chain_id": self.chain_id,
            "url": self.url,
            "state": self.state,
            "head_block": self.head_block,
            "head_age_s": self.head_age_s,
            "lag_blocks": self.lag_blocks,
            "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p99": self.latency_ms_p99,
            "error_rate": self.error_rate,
            "peers": self.peers,
            "is_primary": self.is_primary,
            "checked_at": self.checked_at,
            "node_chain_id": self.node_chain_id,
            "last_error": self.last_error,
        }


def node_status(
    pool: EndpointPool, endpoint: Endpoint, *, now: float, checked_at: str
) -> NodeStatus:
    """The status of one endpoint of ``pool`` (``now`` is wall-clock Unix time)."""
    health = endpoint.health
    head = health.head
    p50 = health.stats.latency_ms(0.5)
    p99 = health.stats.latency_ms(0.99)
    return NodeStatus(
        chain=pool.chain,
        chain_id=pool.chain_id,
        url=endpoint.safe_url,
        state=health.state,
        head_block=None if head is None else head.number,
        head_age_s=None if head is None else round(max(0.0, now - head.timestamp), 3),
        lag_blocks=health.lag_blocks,
        latency_ms_p50=None if p50 is None else round(p50, 3),
        latency_ms_p99=None if p99 is None else round(p99, 3),
        error_rate=round(health.stats.error_rate, 4),
        peers=health.peers,
        is_primary=pool.primary is endpoint,
        checked_at=checked_at,
        node_chain_id=health.chain_id,
        last_error=health.last_error if health.state != "ok" else None,
    )


class NodeMonitor:
    """Publishes every endpoint's NodeStatus after each probe round of one pool."""

    def __init__(self, pool: EndpointPool, publish: Publisher | None = None) -> None:
        self.pool = pool
        self.publish = publish
        self.latest: list[NodeStatus] = []
        self.rounds = 0
        pool.listeners.append(self._on_round)

    def statuses(self) -> list[NodeStatus]:
        checked_at = utc_now_iso()
        now = time.time()
        return [
            node_status(self.pool, e, now=now, checked_at=checked_at) for e in self.pool.endpoints
        ]

    async def _on_round(self, pool: EndpointPool) -> None:
        self.latest = self.statuses()
        self.rounds += 1
        if self.publish is not None:
            for status in self.latest:
                await self.publish(EventName.NODE_STATUS, pool.chain, status.to_json())
