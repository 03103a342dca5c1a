"""When a chain cannot trade: the pure rules, with times and facts passed in."""

from __future__ import annotations

from mevstack.obs.conditions import ChainFacts, ConditionTracker, Facts, not_trading_window

WINDOW = 120.0


def tracker() -> ConditionTracker:
    return ConditionTracker({"base": WINDOW, "polygon": WINDOW}, failing_window=300, failing_min=3)


def facts(auto: bool = True, **extra: ChainFacts) -> Facts:
    return Facts(chains={"base": ChainFacts(auto_trading=auto), **extra})


def kinds(t: ConditionTracker) -> list[tuple[str, str | None]]:
    return [(c.kind, c.chain) for c, _ in t.active()]


def test_the_window_is_thirty_blocks_and_at_least_two_minutes() -> None:
    assert not_trading_window(12.0) == 360.0
    assert not_trading_window(2.0) == 120.0


def test_a_chain_with_opportunities_and_no_inclusion_is_not_trading() -> None:
    t = tracker()
    t.evaluate(facts(), 0.0)  # auto-trading from t=0
    t.on_event("mev.opportunity", "base", {"status": "detected"}, 100.0)
    assert t.evaluate(facts(), 110.0).raised == []  # not on long enough yet
    change = t.evaluate(facts(), 130.0)
    assert [(c.kind, c.chain) for c in change.raised] == [("chain_not_trading", "base")]
    assert "no trade included for 120 s" in change.raised[0].message
    # still active: not raised again, and it keeps its first time
    assert t.evaluate(facts(), 140.0).raised == []
    assert t.active()[0][1] == 130.0
    t.on_event("trade.included", "base", {"status": "included"}, 150.0)
    change = t.evaluate(facts(), 151.0)
    assert [c.kind for c in change.cleared] == ["chain_not_trading"]
    assert kinds(t) == []


def test_no_alarm_without_opportunities_or_without_auto_trading() -> None:
    t = tracker()
    t.evaluate(facts(), 0.0)
    assert t.evaluate(facts(), 500.0).raised == []  # an idle market is not a fault
    t.on_event("mev.opportunity", "base", {"status": "detected"}, 490.0)
    assert t.evaluate(facts(auto=False), 500.0).raised == []
    # auto-trading switched on again: its window starts over
    assert t.evaluate(facts(), 501.0).raised == []
    t.on_event("mev.opportunity", "base", {"status": "detected"}, 600.0)
    assert [c.kind for c in t.evaluate(facts(), 622.0).raised] == ["chain_not_trading"]


def test_expired_opportunities_do_not_count_as_having_opportunities() -> None:
    t = tracker()
    t.evaluate(facts(), 0.0)
    t.on_event("mev.opportunity", "base", {"status": "expired"}, 100.0)
    assert t.evaluate(facts(), 200.0).raised == []


def test_failing_trades_need_three_and_more_than_included() -> None:
    t = tracker()
    for at in (10.0, 20.0):
        t.on_event("trade.failed", "polygon", {"status": "failed"}, at)
    assert t.evaluate(facts(), 30.0).raised == []
    t.on_event("trade.failed", "polygon", {"status": "reverted"}, 40.0)
    raised = t.evaluate(facts(), 41.0).raised
    assert [(c.kind, c.chain) for c in raised] == [("trades_failing", "polygon")]
    assert raised[0].details == {"failed": 3, "included": 0}
    for at in (50.0, 51.0, 52.0):
        t.on_event("trade.included", "polygon", {"status": "included"}, at)
    assert [c.kind for c in t.evaluate(facts(), 53.0).cleared] == ["trades_failing"]
    # outcomes older than the window are forgotten
    for at in (60.0, 61.0, 62.0, 63.0):
        t.on_event("trade.failed", "polygon", {"status": "failed"}, at)
    assert [c.kind for c in t.evaluate(facts(), 64.0).raised] == ["trades_failing"]
    assert [c.kind for c in t.evaluate(facts(), 1000.0).cleared] == ["trades_failing"]


def test_chain_down_kill_switch_and_low_balance() -> None:
    t = tracker()
    t.on_event("node.status", "polygon", {"url": "http://a", "state": "ok"}, 0.0)
    t.on_event("node.status", "polygon", {"url": "http://b", "state": "down"}, 0.0)
    assert t.evaluate(facts(), 1.0).raised == []  # one healthy node is enough
    t.on_event("node.status", "polygon", {"url": "http://a", "state": "lagging"}, 2.0)
    low = ChainFacts(low_balances=(("operator", 5, 10),), symbol="POL")
    state = Facts(kill_switch=True, kill_reason="drill", chains={"polygon": low})
    raised = t.evaluate(state, 3.0).raised
    assert sorted((c.kind, c.chain) for c in raised) == [
        ("balance_low", "polygon"),
        ("chain_down", "polygon"),
        ("kill_switch", None),
    ]
    by_kind = {c.kind: c for c in raised}
    assert by_kind["kill_switch"].message == "kill switch engaged: drill"
    assert "http://a: lagging" in by_kind["chain_down"].message
    assert by_kind["balance_low"].message == "operator balance 5 wei below the floor 10 wei (POL)"
    assert kinds(t)[0] == ("kill_switch", None)  # the kill switch comes first
    t.on_event("node.status", "polygon", {"url": "http://b", "state": "ok"}, 4.0)
    cleared = t.evaluate(Facts(chains={"polygon": ChainFacts()}), 5.0).cleared
    assert sorted(c.kind for c in cleared) == ["balance_low", "chain_down", "kill_switch"]
