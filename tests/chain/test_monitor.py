"""NodeMonitor on real anvil: NodeStatus shape, states, cadence, and no credentials anywhere."""

from __future__ import annotations

import json
import time
from typing import Any

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.monitor import NodeMonitor
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.events import EventName
from tests.chain.proxy import DelayProxy
from tests.waiting import wait_until

DESIGN_KEYS = {
    "chain",
    "chain_id",
    "url",
    "state",
    "head_block",
    "head_age_s",
    "lag_blocks",
    "latency_ms_p50",
    "latency_ms_p99",
    "error_rate",
    "peers",
    "is_primary",
    "checked_at",
}


async def test_monitor_publishes_every_endpoint_each_round(anvil: Anvil) -> None:
    secret_url = f"http://alice:hunter2@127.0.0.1:{free_port()}/v3/0123456789abcdef0123"
    published: list[tuple[EventName, str | None, dict[str, Any]]] = []

    async def publish(name: EventName, chain: str | None, data: dict[str, Any]) -> None:
        published.append((name, chain, data))

    hanging = await DelayProxy(anvil.rpc_url, hang=True).start()
    block_time = 0.5
    pool = EndpointPool(
        "dev", 31337, [anvil.rpc_url, secret_url, hanging.url], block_time=block_time
    )
    monitor = NodeMonitor(pool, publish)
    started = time.monotonic()
    await pool.start()
    try:
        await wait_until(lambda: monitor.rounds >= 6, within=10.0, what="6 probe rounds")
        elapsed = time.monotonic() - started
    finally:
        await pool.aclose()
        await hanging.stop()
    # a refresh every block time (6 rounds, the first at start), even with a hanging endpoint
    assert elapsed <= 5 * block_time + 2.0, elapsed
    assert monitor.latest[2].state == "down" and monitor.latest[2].url == hanging.url
    assert all(name is EventName.NODE_STATUS and chain == "dev" for name, chain, _ in published)
    by_url: dict[str, dict[str, Any]] = {}
    for _, _, data in published:
        assert set(data) >= DESIGN_KEYS
        by_url[data["url"]] = data
    assert len(by_url) == 3
    good = by_url[anvil.rpc_url]
    assert good["state"] == "ok" and good["is_primary"] is True and good["chain_id"] == 31337
    assert good["head_block"] == int(good["head_block"]) and good["lag_blocks"] == 0
    assert good["latency_ms_p50"] is not None and good["latency_ms_p99"] >= good["latency_ms_p50"]
    assert good["checked_at"].endswith("Z")
    dead = next(v for k, v in by_url.items() if k not in (anvil.rpc_url, hanging.url))
    assert dead["state"] == "down" and dead["is_primary"] is False and dead["error_rate"] > 0
    text = json.dumps(published)
    assert "hunter2" not in text and "alice" not in text and "0123456789abcdef0123" not in text
    assert dead["url"] == f"http://***@127.0.0.1:{secret_url.split(':')[3].split('/')[0]}/v3/***"
