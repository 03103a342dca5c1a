"""Metric naming rules and the text exposition."""

from __future__ import annotations

import uuid

import pytest

from mevstack.obs import metrics
from mevstack.obs.metrics import MetricNameError


def unique(stem: str) -> str:
    return f"mevstack_test_{uuid.uuid4().hex[:8]}_{stem}"


@pytest.mark.parametrize(
    ("kind", "name", "labels", "message"),
    [
        ("counter", "trades_total", (), "starting with 'mevstack_'"),
        ("counter", "mevstack_Trades_total", (), "lower snake case"),
        ("counter", "mevstack_trades", (), "must end in '_total'"),
        ("gauge", "mevstack_trades_total", (), "only counters end in '_total'"),
        ("histogram", "mevstack_rpc_latency_ms", (), "'ms' is not a base unit, use 'seconds'"),
        ("gauge", "mevstack_gas_price_gwei", (), "use 'wei'"),
        ("gauge", "mevstack_payload_kb", (), "use 'bytes'"),
        ("counter", "mevstack_requests_total", ("chain", "user"), "label(s) user not allowed"),
        ("counter", "mevstack_requests_total", ("chain", "chain"), "duplicate label"),
    ],
)
def test_names_breaking_the_conventions_are_refused(
    kind: str, name: str, labels: tuple[str, ...], message: str
) -> None:
    declare = {"counter": metrics.counter, "gauge": metrics.gauge, "histogram": metrics.histogram}
    with pytest.raises(MetricNameError) as info:
        declare[kind](name, "doc", labels)
    assert message in str(info.value)


def test_declare_render_and_read_back() -> None:
    name = unique("opportunities_total")
    opps = metrics.counter(name, "Opportunities found.", ["chain", "strategy"])
    assert metrics.counter(name, "Opportunities found.", ["chain", "strategy"]) is opps
    opps.labels(chain="base", strategy="arbitrage").inc(3)
    latency = metrics.histogram(unique("rpc_latency_seconds"), "RPC latency.", ["endpoint"])
    latency.labels(endpoint="http://127.0.0.1:8545").observe(0.002)
    lag = metrics.gauge(unique("head_lag_blocks"), "Blocks behind the best node.", ["chain"])
    lag.labels(chain="base").set(2)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert f'{name}{{chain="base",strategy="arbitrage"}} 3.0' in text
    assert f"# TYPE {name} counter" in text
    assert metrics.sample_value(name, {"chain": "base", "strategy": "arbitrage"}) == 3.0
    assert metrics.sample_value(name, {"chain": "nowhere", "strategy": "arbitrage"}) is None
    with pytest.raises(MetricNameError, match="already declared as counter"):
        metrics.counter(name, "again", ["chain"])


def test_every_declared_metric_follows_the_conventions() -> None:
    import mevstack.bus  # noqa: F401  (declares the bus metrics)

    body, _ = metrics.render()
    families = [line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")]
    assert "mevstack_bus_dropped_events_total" in families
    for family in families:
        assert family.startswith("mevstack_")
