"""The engine's watch: metrics and conditions from events, notifications to a real webhook
receiver through the real Notifier, and the alerts the API serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from mevstack.exploits.notify import Notifier, WebhookTarget
from mevstack.obs.conditions import ChainFacts, Facts
from mevstack.obs.metrics import sample_value
from mevstack.obs.watch import EngineWatch
from tests.exploits.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_raised_conditions_reach_the_webhook_once_and_show_in_alerts(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    current = {"facts": Facts(chains={"watched": ChainFacts(auto_trading=True)})}
    async with Notifier([WebhookTarget(f"{receiver.url}/hook")], dedup_seconds=3600) as notifier:

        async def notify(
            kind: str, chain: str | None, message: str, details: dict[str, object], key: str
        ) -> None:
            await notifier.notify(kind, chain, message, details, dedup_key=key)

        watch = EngineWatch(
            windows={"watched": 120.0}, facts=lambda: current["facts"], notify=notify, clock=clock
        )
        await watch.evaluate()
        clock.now += 130  # auto-trading for longer than the window
        watch.on_event(
            "mev.opportunity", "watched", {"id": "o", "kind": "arbitrage", "status": "detected"}
        )
        for i in range(3):
            watch.on_event(
                "trade.failed", "watched", {"id": f"t{i}", "status": "failed", "tx_hashes": []}
            )
        assert (
            sample_value(
                "mevstack_trade_transitions_total", {"chain": "watched", "status": "failed"}
            )
            == 3
        )
        with caplog.at_level(logging.INFO, logger="mevstack.alerts"):
            raised = await watch.evaluate()
            assert sorted(c.kind for c in raised) == ["chain_not_trading", "trades_failing"]
            await watch.evaluate()  # still active: nothing new is sent
            bodies = await asyncio.to_thread(receiver.wait_for, 2)
        assert sorted(b["kind"] for b in bodies) == ["chain_not_trading", "trades_failing"]
        assert {b["chain"] for b in bodies} == {"watched"}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        alerts = watch.alerts()
        assert [a["kind"] for a in alerts] == ["chain_not_trading", "trades_failing"]
        assert all(a["since"].endswith("Z") and a["chain"] == "watched" for a in alerts)

        # the kill switch is shown but its owner already notifies: not sent again from here
        current["facts"] = Facts(kill_switch=True, chains={"watched": ChainFacts()})
        await watch.evaluate()
        assert watch.alerts()[0]["kind"] == "kill_switch"
        await watch.aclose()
    assert sorted(b["kind"] for b in receiver.received()) == ["chain_not_trading", "trades_failing"]


async def test_a_broken_event_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    watch = EngineWatch(windows={}, facts=Facts)
    with caplog.at_level(logging.ERROR, logger="mevstack.alerts"):
        watch.on_event(
            "trade.included",
            "x",
            {"status": "included", "realized_profit": "1", "token": "T", "id": None},
        )  # type: ignore[dict-item]
        watch.on_event("block.new", "x", None)  # type: ignore[arg-type]
    assert any("not counted" in r.getMessage() for r in caplog.records)
