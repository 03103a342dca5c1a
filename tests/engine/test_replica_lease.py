"""The execution lease of engine replicas on a real devnet chain, under faults.

A standby with no shared Redis can never be handed the lease, so it never signs.  When the Redis
that carries an engine's bus and lease restarts empty under it, the engine comes back by itself:
it takes the lease again with an epoch above every epoch its trades carry, keeps the bus
sequence moving forward (no seq handed out twice), and trades again, with every trade of before
and after included exactly once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mevstack.api.view import NotAvailable
from mevstack.bus import MemoryBus, open_bus
from mevstack.engine.engine import Engine
from mevstack.events import Event
from mevstack.execution.lease import RedisLease
from mevstack.store import Store
from tests.engine.test_execution_e2e import PASSWORD_ENV, planted_opportunity, settings_for
from tests.engine.world import ExecutionWorld as World
from tests.redis_server import RedisServer
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def w(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(PASSWORD_ENV, world.password)
    yield world


async def test_a_standby_on_a_memory_bus_never_signs(w: World, tmp_path: Path) -> None:
    settings = settings_for(w, tmp_path, mode="live", auto=True)
    bus = MemoryBus()
    store = Store.open(settings.database.url)
    engine = Engine(settings, bus=bus, store=store, standby=True)
    try:
        await engine.start()
        opportunity = await planted_opportunity(engine, w)
        assert engine.health()["lease"] is False
        with pytest.raises(NotAvailable, match="does not hold the execution lease"):
            await engine.execute(opportunity.id, None)
        assert engine.executions["ethereum"].submitter.signer.signed == 0
        assert store.list_trades().items == []  # auto-execution did not take it either
    finally:
        async with asyncio.timeout(15):
            await engine.stop()
        await bus.aclose()
        store.close()


async def test_an_engine_trades_again_after_its_redis_restarts_empty(
    w: World, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = settings_for(w, tmp_path, mode="live", auto=False)
    settings = settings.model_copy(
        update={"bus": settings.bus.model_copy(update={"url": redis_server.url})}
    )
    namespace = f"chaos-{secrets.token_hex(4)}"
    bus = open_bus(settings.bus.url, namespace=namespace)
    store = Store.open(settings.database.url)
    engine = Engine(
        settings, bus=bus, store=store, lease_name=f"{namespace}:lease", lease_ttl_ms=900
    )
    seen: list[Event] = []
    sub = await bus.subscribe("chaos-observer", maxsize=100_000)

    async def collect() -> None:
        async for event in sub:
            seen.append(event)

    collector = asyncio.create_task(collect())
    try:
        await engine.start()
        await wait_until(lambda: engine.health()["lease"] is True, 10, "the engine's lease")
        assert isinstance(engine.lease, RedisLease)

        async def trade_included() -> str:
            opportunity = await planted_opportunity(engine, w)
            trade = await engine.execute(opportunity.id, None)
            assert trade["status"] == "submitted", trade

            def included() -> bool:
                row = store.get_trade(trade["id"])
                return row is not None and row.status == "included"

            await wait_until(included, 30, f"trade {trade['id']} to be included")
            return str(trade["id"])

        first = await trade_included()
        await wait_until(lambda: bool(seen), 10, "the observer to see events")
        seq_before = max(e.seq for e in seen)

        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)  # empty: no persistence

        def lease_again() -> bool:
            first_row = store.get_trade(first)
            assert first_row is not None
            epoch = engine.lease.epoch if isinstance(engine.lease, RedisLease) else None
            return (
                engine.health()["lease"] is True
                and epoch is not None
                and epoch > first_row.fencing_epoch
            )

        await wait_until(lease_again, 20, "the lease taken again above the trades' epoch")
        count_before = len(seen)
        second = await trade_included()
        await wait_until(lambda: len(seen) > count_before, 10, "events after the restart")

        after = seen[count_before:]
        assert min(e.seq for e in after) > seq_before, "a bus seq was handed out twice"
        seqs = [e.seq for e in seen]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))

        rows = {t.id: t for t in store.list_trades(limit=100).items}
        assert set(rows) == {first, second}
        a, b = rows[first], rows[second]
        assert a.status == b.status == "included"
        assert b.fencing_epoch > a.fencing_epoch
        assert a.realized_profit == a.expected_profit
        assert b.realized_profit == b.expected_profit
        nonces = [
            int(w.rpc.call("eth_getTransactionByHash", [t.tx_hashes[0]])["nonce"], 16)
            for t in (a, b)
        ]
        assert nonces[1] == nonces[0] + 1
    finally:
        async with asyncio.timeout(15):
            await engine.stop()
        collector.cancel()
        sub.close()
        await bus.aclose()
        store.close()
