"""Trading state and risk: validation, audit, persistence across restarts, the gate's decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mevstack.config import Settings, parse_settings
from mevstack.execution.risk import (
    BlockEntry,
    Candidate,
    ChainLimits,
    ChainStatus,
    RiskConfigError,
    evaluate,
)
from mevstack.execution.trading_state import KillSwitchEngaged, TradingState
from mevstack.store import Store

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
POOL = "0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc"


def settings(mode: str = "live", **chain: Any) -> Settings:
    raw = {
        "engine": {"mode": mode},
        "chains": [
            {
                "name": "ethereum",
                "chain_id": 1,
                "rpc": ["http://127.0.0.1:8545"],
                "wrapped_native": WETH,
                "max_trade_wei": "5000",
                **chain,
            }
        ],
    }
    return parse_settings(raw, source="test", environ={})


def opportunity(amount_in: int = 1000, net: int = 10, token: str = WETH) -> dict[str, Any]:
    return {
        "chain": "ethereum",
        "token": token,
        "amount_in": str(amount_in),
        "net_profit_wei": str(net),
        "path": [{"pool": POOL, "token_in": token, "token_out": USDC}],
    }


def candidate(**kw: Any) -> Candidate:
    fee = kw.pop("fee", 10)
    return Candidate.from_opportunity(
        opportunity(**kw), max_fee_per_gas_wei=fee, wrapped_native=WETH
    )


def test_changes_are_validated_audited_and_survive_a_restart(
    store_factory: Callable[[], Store],
) -> None:
    store = store_factory()
    state = TradingState.load(store, settings())
    assert state.mode == "live" and state.limits["ethereum"].max_trade_wei == 5000
    state.set_mode("paper", actor="alice")
    state.set_auto_execute(True, actor="alice")
    state.set_limits(
        "ethereum",
        {"max_fee_per_gas_wei": "900", "max_in_flight": 3, "min_native_balance_wei": 7},
        actor="bob",
    )
    entry = state.block("token", USDC.lower(), actor="feed", source="exploit-feed", reason="hack")
    state.set_kill_switch(True, actor="carol", reason="incident")
    for bad in (
        lambda: state.set_mode("yolo", actor="x"),
        lambda: state.set_limits("ethereum", {"max_trade_wei": "-1"}, actor="x"),
        lambda: state.set_limits("ethereum", {"max_trade_wei": 1.5}, actor="x"),
        lambda: state.set_limits("ethereum", {"bogus": 1}, actor="x"),
        lambda: state.set_limits("nowhere", {}, actor="x"),
        lambda: state.block("wallet", USDC, actor="x", source="s"),
        lambda: state.block("token", "0x1234", actor="x", source="s"),
        lambda: state.set_auto_execute("yes", actor="x"),
        lambda: state.apply_patch({"mode": "live", "limits": {"ethereum": {"oops": 1}}}, actor="x"),
        lambda: state.apply_patch({"unknown": 1}, actor="x"),
        lambda: state.apply_patch({"kill_switch": False, "reason": 5}, actor="x"),
        lambda: state.set_mode("live", actor=""),
    ):
        with pytest.raises(RiskConfigError):
            bad()
    assert str(state.mode) == "paper", "a rejected patch applied part of itself"
    actions = [(e.actor, e.action) for e in store.list_audit()]
    assert actions[::-1] == [
        ("alice", "trading.set_mode"),
        ("alice", "trading.set_auto_execute"),
        ("bob", "trading.set_limits"),
        ("feed", "trading.block"),
        ("carol", "trading.kill_switch"),
    ]
    assert store.list_audit(limit=1)[0].details == {"engaged": True, "reason": "incident"}

    restarted = TradingState.load(store_factory(), settings())
    assert restarted.snapshot() == state.snapshot()
    snap = restarted.snapshot()
    assert snap["mode"] == "paper" and snap["auto_execute"] is True and snap["kill_switch"] is True
    assert snap["chains"]["ethereum"]["limits"]["max_fee_per_gas_wei"] == "900"
    assert snap["chains"]["ethereum"]["limits"]["max_trade_wei"] == "5000"
    assert snap["blocklist"] == [entry.to_json()] and entry.address == USDC
    assert not restarted.gate.is_open
    with pytest.raises(KillSwitchEngaged):
        restarted.gate.check()
    restarted.apply_patch({"kill_switch": False, "mode": "live"}, actor="carol")
    assert restarted.gate.is_open and restarted.mode == "live"
    # an edited config mode wins over the saved one
    assert TradingState.load(store, settings(mode="observe")).mode == "observe"
    assert TradingState.load(store, settings(mode="live")).mode == "live"


def test_check_refuses_for_the_first_reason_and_allows_a_clean_trade(
    sqlite_store: Store,
) -> None:
    state = TradingState.load(sqlite_store, settings(min_net_profit_wei="5"))
    state.set_limits(
        "ethereum",
        {
            "max_fee_per_gas_wei": "100",
            "min_native_balance_wei": "1000",
            "daily_loss_limit_wei": 50,
        },
        actor="t",
    )
    assert state.check(candidate()).reason == (
        "chain ethereum paused: operator balance unknown (balance floor is set)"
    )
    state.set_native_balance("ethereum", 999)
    assert "below the floor" in (state.check(candidate()).reason or "")
    state.set_native_balance("ethereum", 10**18)
    assert state.check(candidate()).ok
    assert "above max_trade_wei" in (state.check(candidate(amount_in=5001)).reason or "")
    assert state.check(candidate(amount_in=5000)).ok
    assert "value in native wei unknown" in (state.check(candidate(token=USDC)).reason or "")
    assert "above the cap" in (state.check(candidate(fee=101)).reason or "")
    assert "below the minimum 5" in (state.check(candidate(net=4)).reason or "")
    state.set_in_flight("ethereum", 1)
    assert "in flight" in (state.check(candidate()).reason or "")
    state.set_in_flight("ethereum", 0)
    state.record_pnl("ethereum", -30)
    assert state.check(candidate()).ok
    state.record_pnl("ethereum", -20)
    assert "daily loss 50 wei reached" in (state.check(candidate()).reason or "")
    state.record_pnl("ethereum", 20)  # a reorg rolled a loss back
    assert state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == "-30"
    state.block("pool", POOL, actor="t", source="operator", ttl_seconds=3600)
    assert state.is_blocked("ethereum", "pool", POOL.lower())
    assert not state.is_blocked("ethereum", "token", POOL)
    assert "is blocklisted by operator" in (state.check(candidate()).reason or "")
    assert state.unblock("pool", POOL, actor="t") and state.check(candidate()).ok
    state.set_mode("observe", actor="t")
    assert state.check(candidate()).reason == "mode is observe"
    state.set_kill_switch(True, actor="t")
    assert state.check(candidate()).reason == "kill switch engaged"


def test_blocklist_entries_expire_and_scope_to_their_chain() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    entry = BlockEntry(
        kind="token",
        address=USDC,
        chain="ethereum",
        source="exploit-feed",
        reason="drained",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    cand = Candidate("ethereum", WETH, (WETH, USDC), (POOL,), 1, 1, 1)

    def decide(at: datetime, c: Candidate = cand) -> str | None:
        return evaluate(
            mode="live",
            kill_switch=False,
            limits=ChainLimits(),
            blocklist=[entry],
            status=ChainStatus(),
            candidate=c,
            now=at,
        ).reason

    assert "blocklisted by exploit-feed: drained" in (decide(now) or "")
    assert decide(now + timedelta(minutes=5)) is None
    other_chain = Candidate("base", WETH, (WETH, USDC), (POOL,), 1, 1, 1)
    assert decide(now, other_chain) is None
    assert BlockEntry.from_json(entry.to_json()) == entry
