"""P&L today per chain in its own currency, balances against their floors, and the gauges and
log lines that mirror the trading state."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mevstack.config import Settings, parse_settings
from mevstack.execution.trading_state import TradingState
from mevstack.obs.metrics import sample_value
from mevstack.store import Store

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
WPOL = "0x0d500B1d8E8eF31E21C99d1Db9A6444d3ADf1270"


def chain(name: str, chain_id: int, wrapped: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "chain_id": chain_id,
        "rpc": ["http://127.0.0.1:8545"],
        "wrapped_native": wrapped,
        **extra,
    }


def settings(*chains: dict[str, Any]) -> Settings:
    return parse_settings(
        {"engine": {"mode": "live"}, "chains": list(chains)}, source="test", environ={}
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/state.db")
    yield opened
    opened.close()


def test_pnl_today_is_per_chain_with_its_symbol_and_never_mixes_currencies(store: Store) -> None:
    state = TradingState(
        store,
        settings(
            chain("pnl-eth", 1, WETH),
            chain("pnl-base", 8453, WETH),
            chain("pnl-polygon", 137, WPOL),
        ),
    )
    state.record_pnl("pnl-eth", 3 * 10**18 + 1)
    state.record_pnl("pnl-base", -1)
    state.record_pnl("pnl-polygon", 7 * 10**18)
    doc = state.snapshot()
    assert doc["pnl_today"] == {
        "pnl-eth": {"wei": str(3 * 10**18 + 1), "symbol": "ETH"},
        "pnl-base": {"wei": "-1", "symbol": "ETH"},
        "pnl-polygon": {"wei": str(7 * 10**18), "symbol": "POL"},
    }
    # summed per currency, exactly; no total across ETH and POL
    assert doc["pnl_today_by_symbol"] == {"ETH": str(3 * 10**18), "POL": str(7 * 10**18)}
    assert doc["pnl_today_wei"] is None
    assert doc["pnl_today_symbol"] is None
    assert doc["chains"]["pnl-polygon"]["native_symbol"] == "POL"
    assert doc["chains"]["pnl-polygon"]["pnl_today_wei"] == str(7 * 10**18)
    assert sample_value("mevstack_pnl_today_wei", {"chain": "pnl-base"}) == -1.0


def test_one_currency_keeps_its_total_and_a_configured_symbol_wins(store: Store) -> None:
    state = TradingState(
        store,
        settings(chain("one-a", 1, WETH), chain("one-b", 424242, WETH, native_symbol="ETH")),
    )
    state.record_pnl("one-a", 5)
    state.record_pnl("one-b", 6)
    doc = state.snapshot()
    assert (doc["pnl_today_wei"], doc["pnl_today_symbol"]) == ("11", "ETH")
    unknown = TradingState(store, settings(chain("odd", 424243, WETH)))
    assert unknown.snapshot()["chains"]["odd"]["native_symbol"] == "native"


def test_balances_below_their_floors_are_reported_and_exported(store: Store) -> None:
    state = TradingState(
        store,
        settings(
            chain(
                "floors",
                1,
                WETH,
                operator_balance_floor_wei=str(10**17),
                executor_balance_floor_wei="500",
            )
        ),
    )
    assert state.low_balances("floors") == []  # unknown balances are not "low"
    state.set_native_balance("floors", 10**16)
    state.set_executor_balance("floors", 600)
    assert state.low_balances("floors") == [("operator", 10**16, 10**17)]
    doc = state.snapshot()["chains"]["floors"]
    assert doc["balance_low"] == ["operator"]
    assert doc["balance_floor_wei"] == {"operator": str(10**17), "executor": "500"}
    assert doc["executor_balance_wei"] == "600"
    labels = {"chain": "floors", "role": "operator"}
    assert sample_value("mevstack_balance_wei", labels) == 1e16
    assert sample_value("mevstack_balance_floor_wei", labels) == 1e17
    state.set_executor_balance("floors", 499)
    assert [r for r, _, _ in state.low_balances("floors")] == ["operator", "executor"]


def test_operator_floor_defaults_to_the_pause_floor(store: Store) -> None:
    state = TradingState(store, settings(chain("pausefloor", 1, WETH)))
    assert state.balance_floor("pausefloor", "operator") == 0
    state.set_limits("pausefloor", {"min_native_balance_wei": "1000"}, actor="test")
    assert state.balance_floor("pausefloor", "operator") == 1000
    state.set_native_balance("pausefloor", 999)
    assert sample_value("mevstack_chain_paused", {"chain": "pausefloor"}) == 1.0
    assert state.low_balances("pausefloor") == [("operator", 999, 1000)]


def test_kill_switch_gauge_and_an_info_line_per_admin_change(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    state = TradingState(store, settings(chain("admin", 1, WETH)))
    with caplog.at_level(logging.INFO, logger="mevstack.audit"):
        state.apply_patch({"kill_switch": True, "reason": "drill"}, actor="api")
        assert sample_value("mevstack_kill_switch_engaged") == 1.0
        state.apply_patch({"kill_switch": False, "auto_execute": True}, actor="api")
    assert sample_value("mevstack_kill_switch_engaged") == 0.0
    records = [r for r in caplog.records if r.name == "mevstack.audit"]
    actions = [getattr(r, "action", None) for r in records]
    assert actions == ["trading.kill_switch", "trading.kill_switch", "trading.set_auto_execute"]
    assert all(r.levelno == logging.INFO and getattr(r, "actor", None) == "api" for r in records)
    assert getattr(records[0], "details", None) == {"engaged": True, "reason": "drill"}
    # a restart restores the gauge from the persisted state
    state.apply_patch({"kill_switch": True}, actor="api")
    metrics_before = sample_value("mevstack_kill_switch_engaged")
    state.set_kill_switch(False, actor="api")
    assert (metrics_before, sample_value("mevstack_kill_switch_engaged")) == (1.0, 0.0)
    state.set_kill_switch(True, actor="api")
    TradingState.load(store, state.settings)
    assert sample_value("mevstack_kill_switch_engaged") == 1.0
