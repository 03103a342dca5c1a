"""The watch inside a running engine on a devnet chain: its events feed the metrics, admin actions
are logged, and the trading state carries the alerts and P&L per chain in its own currency."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.obs.metrics import sample_value
from tests.engine.world import chain_entry, engine_settings, running_engine
from tests.waiting import wait_until


async def test_engine_events_feed_metrics_and_admin_actions_are_logged(
    devnet_chain: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, dep = devnet_chain
    settings = engine_settings(tmp_path, chain_entry("watched-eth", node.rpc_url, dep))
    async with running_engine(settings) as (engine, _events):
        await wait_until(
            lambda: (sample_value("mevstack_chain_head_block", {"chain": "watched-eth"}) or 0) > 0,
            30,
            "the head metric",
        )
        endpoint = {"chain": "watched-eth", "endpoint": node.rpc_url, "state": "ok"}
        await wait_until(lambda: sample_value("mevstack_node_state", endpoint) == 1, 30, "node ok")
        # observe mode: the chain does not trade by itself
        assert sample_value("mevstack_chain_auto_trading", {"chain": "watched-eth"}) == 0

        with caplog.at_level(logging.INFO, logger="mevstack.audit"):
            agent = (await engine.agents())[0]["id"]
            await engine.set_agent_running(agent, False)
            await engine.set_agent_running(agent, True)
            state = await engine.patch_trading_state({"kill_switch": True, "reason": "drill"})
        actions = [getattr(r, "action", None) for r in caplog.records if r.name == "mevstack.audit"]
        assert actions == ["agents.stop", "agents.start", "trading.kill_switch"]
        assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "mevstack.audit")

        # the answer to the PATCH already shows the alert; the dashboard banner reads it
        assert [a["kind"] for a in state["alerts"]] == ["kill_switch"]
        assert state["alerts"][0]["message"] == "kill switch engaged: drill"
        assert state["pnl_today"] == {"watched-eth": {"wei": "0", "symbol": "ETH"}}
        assert (state["pnl_today_wei"], state["pnl_today_symbol"]) == ("0", "ETH")
        released = await engine.patch_trading_state({"kill_switch": False})
        assert released["alerts"] == []
        assert (await engine.trading_state())["alerts"] == []
