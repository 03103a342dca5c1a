"""The chain and trading metrics: fed from the events the engine publishes and from real
JSON-RPC calls, and the INFO line written for every trade state change."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest

from mevstack.chain.errors import ExecutionReverted, RpcTransportError
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.obs import engine_metrics
from mevstack.obs.engine_metrics import EventMetrics
from mevstack.obs.metrics import render, sample_value

TX = "0x" + "ab" * 32
TOKEN = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
REVERTER = "0x00000000000000000000000000000000000Dead1"


def chain_name() -> str:
    """A chain name of the test's own: the registry is process-wide."""
    return f"c{uuid.uuid4().hex[:8]}"


def trade(ident: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "opportunity_id": "op1",
        "status": status,
        "token": TOKEN,
        "tx_hashes": [TX],
        "expected_profit": "1000",
        "realized_profit": None,
        "net_pnl_wei": None,
        **fields,
    }


def test_heads_nodes_and_the_head_age_read_at_scrape_time() -> None:
    chain = chain_name()
    engine_metrics.declare_chain(chain)
    feed = EventMetrics()
    stamp = int(time.time()) - 30
    feed.on_event("block.new", chain, {"number": 1234, "timestamp": stamp})
    feed.on_event(
        "node.status",
        chain,
        {
            "url": "http://a",
            "state": "lagging",
            "head_block": 1230,
            "head_age_s": 40.5,
            "lag_blocks": 4,
        },
    )
    assert sample_value("mevstack_chain_head_block", {"chain": chain}) == 1234
    age = sample_value("mevstack_chain_head_age_seconds", {"chain": chain})
    assert age is not None and 30 <= age < 40
    node = {"chain": chain, "endpoint": "http://a"}
    assert sample_value("mevstack_node_state", {**node, "state": "lagging"}) == 1
    assert sample_value("mevstack_node_state", {**node, "state": "ok"}) == 0
    assert sample_value("mevstack_node_lag_blocks", node) == 4
    assert sample_value("mevstack_node_head_age_seconds", node) == 40.5
    feed.on_event("node.status", chain, {"url": "http://a", "state": "down"})
    assert sample_value("mevstack_node_state", {**node, "state": "down"}) == 1
    assert sample_value("mevstack_node_state", {**node, "state": "lagging"}) == 0


def test_opportunities_found_once_per_life_and_expired() -> None:
    chain = chain_name()
    engine_metrics.declare_chain(chain)
    feed = EventMetrics()
    labels = {"chain": chain, "strategy": "arbitrage"}
    assert sample_value("mevstack_opportunities_found_total", labels) == 0
    for _ in range(3):  # refreshed every block under the same id: found once
        feed.on_event(
            "mev.opportunity", chain, {"id": "o1", "kind": "arbitrage", "status": "detected"}
        )
    feed.on_event("mev.opportunity", chain, {"id": "o2", "kind": "backrun", "status": "detected"})
    feed.on_event("mev.opportunity", chain, {"id": "o1", "kind": "arbitrage", "status": "expired"})
    feed.on_event("mev.opportunity", chain, {"id": "o1", "kind": "arbitrage", "status": "detected"})
    assert sample_value("mevstack_opportunities_found_total", labels) == 2
    assert sample_value("mevstack_opportunities_expired_total", labels) == 1
    backrun = {"chain": chain, "strategy": "backrun"}
    assert sample_value("mevstack_opportunities_found_total", backrun) == 1


def test_trade_transitions_realized_profit_and_a_reorg(caplog: pytest.LogCaptureFixture) -> None:
    chain = chain_name()
    engine_metrics.declare_chain(chain)
    feed = EventMetrics()
    with caplog.at_level(logging.INFO, logger="mevstack.trades"):
        feed.on_event("trade.submitted", chain, trade("t1", "submitted"))
        feed.on_event(
            "trade.included",
            chain,
            trade("t1", "included", realized_profit="1000", net_pnl_wei="900", block_number=7),
        )
        feed.on_event("trade.submitted", chain, trade("t1", "submitted"))  # a reorg
        feed.on_event(
            "trade.included", chain, trade("t1", "included", realized_profit="999", block_number=8)
        )
        feed.on_event("trade.failed", chain, trade("t2", "failed", error="nonce too low"))
    count = {
        s: sample_value("mevstack_trade_transitions_total", {"chain": chain, "status": s})
        for s in ("submitted", "included", "failed", "reverted")
    }
    assert count == {"submitted": 2, "included": 2, "failed": 1, "reverted": 0}
    profit = {"chain": chain, "token": TOKEN}
    assert sample_value("mevstack_realized_profit_wei", profit) == 999
    last = sample_value("mevstack_trade_last_included_timestamp_seconds", {"chain": chain})
    assert last is not None and abs(last - time.time()) < 60
    lines = [r for r in caplog.records if r.name == "mevstack.trades"]
    assert [(r.levelno, getattr(r, "status", None)) for r in lines] == [
        (logging.INFO, "submitted"),
        (logging.INFO, "included"),
        (logging.INFO, "submitted"),
        (logging.INFO, "included"),
        (logging.INFO, "failed"),
    ]
    included = lines[1]
    assert (included.trade_id, included.chain, included.tx_hash) == ("t1", chain, TX)  # type: ignore[attr-defined]
    assert (included.expected_profit, included.realized_profit) == ("1000", "1000")  # type: ignore[attr-defined]
    assert lines[4].error == "nonce too low"  # type: ignore[attr-defined]


def test_the_trade_line_is_json_with_its_hash_readable() -> None:
    import io

    from mevstack.obs import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure_logging("info", json=True, stream=stream)
    try:
        EventMetrics().on_event("trade.submitted", chain_name(), trade("t9", "submitted"))
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
    (doc,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert doc["level"] == "info" and doc["trade_id"] == "t9" and doc["status"] == "submitted"
    assert doc["tx_hash"] == TX  # a *_hash field is exempt from key redaction
    assert doc["expected_profit"] == "1000"


async def test_rpc_latency_and_errors_by_method_and_kind(anvil: Anvil) -> None:
    chain = chain_name()
    async with RpcClient(anvil.rpc_url, chain=chain) as client:
        await client.request("eth_blockNumber", [])
        await client.batch([("eth_chainId", []), ("eth_blockNumber", [])])
        with pytest.raises(ExecutionReverted):
            # a contract whose code (set by state override) is PUSH 0, PUSH 0, REVERT
            await client.request(
                "eth_call",
                [
                    {"to": REVERTER, "data": "0x"},
                    "latest",
                    {REVERTER: {"code": "0x60006000fd"}},
                ],
            )
    count = sample_value(
        "mevstack_rpc_latency_seconds_count", {"chain": chain, "method": "eth_blockNumber"}
    )
    assert count == 1
    assert (
        sample_value("mevstack_rpc_latency_seconds_count", {"chain": chain, "method": "batch"}) == 1
    )
    reverted = {"chain": chain, "method": "eth_call", "kind": "reverted"}
    assert sample_value("mevstack_rpc_errors_total", reverted) == 1
    async with RpcClient(f"http://127.0.0.1:{free_port()}", chain=chain, timeout=2) as dead:
        with pytest.raises(RpcTransportError):
            await dead.request("eth_blockNumber", [])
    transport = {"chain": chain, "method": "eth_blockNumber", "kind": "transport"}
    assert sample_value("mevstack_rpc_errors_total", transport) == 1

    # a client that does not know its chain (devnet tools, CLI one-shots) records nothing
    def anonymous_rpc_samples() -> list[bytes]:
        # the registry is the whole process's: other families (a chain-less bus event, say)
        # may rightly carry chain="", the RPC ones never
        return [
            line
            for line in render()[0].splitlines()
            if line.startswith(b"mevstack_rpc_") and b'chain=""' in line
        ]

    assert anonymous_rpc_samples() == []
    async with RpcClient(anvil.rpc_url) as anonymous:
        await anonymous.request("eth_blockNumber", [])
    assert anonymous_rpc_samples() == []


def test_a_send_the_node_already_has_is_not_counted_as_a_failure() -> None:
    from mevstack.chain.errors import RpcResponseError, RpcTimeout
    from mevstack.chain.rpc import error_kind

    assert error_kind(RpcResponseError(-32000, "already known")) == "already_known"
    assert error_kind(RpcResponseError(-32000, "nonce too low")) == "response"
    assert error_kind(RpcTimeout("no answer")) == "timeout"
