"""A real Prometheus (Debian's /usr/bin/prometheus) scraping a running engine on the devnet, with
the shipped alerting rules: the kill switch engaged through the API fires its alert, and a killed
anvil shows its node as down (its alert pending, then firing after its ``for``)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mevstack.api.auth import hash_token
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from mevstack.engine.engine import EngineProcess, running_engine
from tests.engine.world import chain_entry, engine_settings
from tests.obs.test_alert_rules import RULES

pytestmark = pytest.mark.slow

PROMETHEUS = "/usr/bin/prometheus"
ADMIN = "mvt_test_admin_token_for_prometheus"


@dataclass
class Scraped:
    process: EngineProcess
    node_url: str
    engine_url: str
    prometheus_url: str
    doomed: Anvil


@pytest.fixture
def doomed_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """A chain of its own, killed by the test."""
    with Anvil(chain_id=10, balance_eth=1_000_000) as node:
        yield node, deploy_chain(node.rpc_url)


@contextlib.contextmanager
def prometheus(target: str, workdir: Path) -> Iterator[str]:
    """Prometheus scraping ``target`` and evaluating the shipped rules every second."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "mevstack", "static_configs": [{"targets": [target]}]}
                ],
            }
        ),
        encoding="utf-8",
    )
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
async def scraped(
    devnet_chain: tuple[Anvil, ChainDeployment],
    doomed_chain: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
) -> AsyncIterator[Scraped]:
    node, dep = devnet_chain
    doomed, doomed_dep = doomed_chain
    settings = engine_settings(
        tmp_path,
        chain_entry("ethereum", node.rpc_url, dep),
        chain_entry("optimism", doomed.rpc_url, doomed_dep),
        auth={"tokens": [{"name": "ops", "scopes": ["admin"], "sha256": hash_token(ADMIN)}]},
    )
    port = free_port()
    async with running_engine(settings, port=port) as process:
        target = f"127.0.0.1:{port}"
        with prometheus(target, tmp_path) as url:
            yield Scraped(process, node.rpc_url, f"http://{target}", url, doomed)


async def _until(
    client: httpx.AsyncClient, path: str, params: dict[str, str], check: Any, within: float
) -> Any:
    """Poll a Prometheus API path until ``check(data)`` is truthy; its last answer otherwise."""
    deadline = time.monotonic() + within
    data: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = await client.get(path, params=params)
            if answer.status_code == 200:
                data = answer.json()["data"]
                found = check(data)
                if found:
                    return found
        await _pause()
    raise AssertionError(f"{path} {params}: condition not met within {within}s; last: {data}")


async def _pause() -> None:
    await asyncio.sleep(0.2)  # the polling cadence of a deadline loop


def _alerts(name: str, state: str, chain: str | None = None) -> Any:
    def check(data: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            a
            for a in data["alerts"]
            if a["labels"]["alertname"] == name
            and a["state"] == state
            and (chain is None or a["labels"].get("chain") == chain)
        ]

    return check


def _series(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(data["result"])


async def test_prometheus_scrapes_the_engine_and_the_kill_switch_alert_fires(
    scraped: Scraped,
) -> None:
    node_url = scraped.node_url
    async with (
        httpx.AsyncClient(base_url=scraped.prometheus_url, timeout=5) as prom,
        httpx.AsyncClient(base_url=scraped.engine_url, timeout=10) as api,
    ):
        # the engine is scraped: heads, node states and RPC latency of both chains (the registry
        # is the process's, so other tests' chains may be there too: only ours are looked at)
        ours = 'chain=~"ethereum|optimism"'
        heads = await _until(
            prom,
            "/api/v1/query",
            {"query": f"mevstack_chain_head_block{{{ours}}} > 0"},
            lambda d: len(_series(d)) == 2,
            60,
        )
        assert heads
        endpoints = f'endpoint=~"{node_url}|{scraped.doomed.rpc_url}"'
        await _until(
            prom,
            "/api/v1/query",
            {"query": f'mevstack_node_state{{{ours}, {endpoints}, state="ok"}} == 1'},
            lambda d: len(_series(d)) == 2,
            30,
        )
        latency = await _until(
            prom,
            "/api/v1/query",
            {"query": 'mevstack_rpc_latency_seconds_count{method="batch"} > 0'},
            _series,
            30,
        )
        assert latency
        quiet = (await prom.get("/api/v1/alerts")).json()["data"]["alerts"]
        assert [a for a in quiet if a["labels"]["alertname"] == "MevstackKillSwitchEngaged"] == []

        # the kill switch through the API: its alert fires
        answer = await api.patch(
            "/api/trading/state",
            json={"kill_switch": True, "reason": "prometheus test"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert answer.status_code == 200, answer.text
        firing = await _until(
            prom, "/api/v1/alerts", {}, _alerts("MevstackKillSwitchEngaged", "firing"), 30
        )
        assert firing[0]["labels"]["severity"] == "critical"

        # one chain's only node killed: its state is 'down', and the alert is on its way
        scraped.doomed.kill()
        down = await _until(
            prom,
            "/api/v1/query",
            {"query": 'mevstack_node_state{chain="optimism", state="down"} == 1'},
            _series,
            30,
        )
        assert down[0]["metric"]["endpoint"] == scraped.doomed.rpc_url
        pending = await _until(
            prom, "/api/v1/alerts", {}, _alerts("MevstackChainDown", "pending", "optimism"), 30
        )
        assert pending[0]["labels"]["chain"] == "optimism"
        # the healthy chain's node is not reported
        alerts = (await prom.get("/api/v1/alerts")).json()["data"]["alerts"]
        assert all(
            a["labels"].get("endpoint") != node_url
            for a in alerts
            if a["labels"].get("chain") == "ethereum"
        )
        assert all(
            a["labels"].get("chain") != "ethereum"
            for a in alerts
            if a["labels"]["alertname"] == "MevstackChainDown"
        )
