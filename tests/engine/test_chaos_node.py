"""Chaos between the running Engine and a real anvil devnet chain (real Uniswap bytecode, our
executor): the engine's only RPC path goes through the fault-injecting proxy, which loses a
send's answer after the node got it, swallows a send, delivers one after the engine's timeout,
or plays a dead node while the chain is made shorter under it.  After each fault the engine
trades again, and nothing is lost or doubled: every trade reaches a final status and no two
included trades share a nonce."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mevstack.bus import MemoryBus
from mevstack.config import parse_settings
from mevstack.engine.engine import Engine
from mevstack.obs.metrics import sample_value
from mevstack.store import Store, Trade
from tests.chain.proxy import DelayProxy, FaultKind
from tests.engine.test_execution_e2e import PASSWORD_ENV, WEI, planted_opportunity
from tests.engine.world import ExecutionWorld as World
from tests.engine.world import chain_entry
from tests.waiting import wait_until

FINAL = ("included", "reverted", "failed", "cancelled")
RESUBMIT_AFTER = 2


@pytest.fixture
def w(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(PASSWORD_ENV, world.password)
    snapshot = world.rpc.call("evm_snapshot", [])
    yield world
    world.rpc.call("evm_setAutomine", [True])
    assert world.rpc.call("evm_revert", [snapshot]) is True


@dataclass
class Chaos:
    engine: Engine
    proxy: DelayProxy
    store: Store


@contextlib.asynccontextmanager
async def engine_behind_proxy(
    w: World, tmp: Path, before_start: Callable[[Store], object] | None = None
) -> AsyncIterator[Chaos]:
    """The engine in live mode (no auto-execution), its chain's only RPC URL the proxy's."""
    proxy = await DelayProxy(w.node.rpc_url).start()
    entry = chain_entry(
        "ethereum",
        proxy.url,
        w.dep,
        executor=w.executor,
        confirmations=1,
        resubmit_after_blocks=RESUBMIT_AFTER,
    )
    settings = parse_settings(
        {
            "engine": {"state_dir": str(tmp), "mode": "live", "auto_execute": False},
            "database": {"url": f"sqlite:///{tmp}/mevstack.db"},
            "execution": {"keystore": str(w.keystore), "password_env": PASSWORD_ENV},
            "chains": [entry],
        },
        source="test",
        environ={},
    )
    store = Store.open(settings.database.url)
    if before_start is not None:
        before_start(store)
    bus = MemoryBus()
    engine = Engine(settings, bus=bus, store=store)
    await engine.start()
    try:
        yield Chaos(engine, proxy, store)
    finally:
        await engine.stop()
        await bus.aclose()
        await proxy.stop()
        store.close()


async def mine_until(
    w: World, predicate: Callable[[], bool], what: str, within: float = 60
) -> None:
    """Mine a block at a time (anvil mines nothing by itself here) until ``predicate`` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(AssertionError):
            await wait_until(predicate, 0.5, what)  # the engine sees the block, then acts
            return
        assert asyncio.get_running_loop().time() < deadline, f"mined for {within}s: {what}"
        await asyncio.to_thread(w.rpc.call, "evm_mine", [])


def status_of(c: Chaos, trade_id: str) -> str | None:
    row = c.store.get_trade(trade_id)
    return None if row is None else row.status


async def trade_and_land(c: Chaos, w: World) -> Trade:
    """Plant an opportunity, execute it through the engine and wait until it is included."""
    opportunity = await planted_opportunity(c.engine, w)
    answer = await c.engine.executions["ethereum"].execute(opportunity, None)
    assert answer["status"] == "submitted", answer["error"]
    await mine_until(w, lambda: status_of(c, answer["id"]) == "included", "the trade included")
    row = c.store.get_trade(answer["id"])
    assert row is not None
    return row


def assert_nothing_lost_or_doubled(c: Chaos, w: World) -> None:
    """Every trade is final; no two included trades (nor their transactions) share a nonce."""
    trades = c.store.list_trades(chain="ethereum", limit=500).items
    assert trades and all(t.status in FINAL for t in trades), [(t.id, t.status) for t in trades]
    nonces = []
    for trade in trades:
        if trade.status != "included":
            continue
        mined = w.rpc.call("eth_getTransactionByHash", [trade.tx_hashes[-1]])
        assert mined is not None and mined["blockNumber"] is not None
        assert int(mined["blockNumber"], 16) == trade.block_number
        nonces.append(int(mined["nonce"], 16))
    assert len(nonces) == len(set(nonces)), nonces
    mined_count = int(w.rpc.call("eth_getTransactionCount", [w.operator.address, "latest"]), 16)
    pending = int(w.rpc.call("eth_getTransactionCount", [w.operator.address, "pending"]), 16)
    assert pending == mined_count  # nothing of ours is left waiting in the pool


def usdc_of(w: World) -> int:
    return w.trader.balance(w.dep.token("USDC").address)


async def stuck_trade(c: Chaos, w: World) -> tuple[str, str, str, int]:
    """A planted opportunity executed, then its transaction evicted from the node's pool before
    any block held it, and the market moved back so the opportunity is gone: (trade id,
    opportunity id, transaction hash, nonce)."""
    usdc = await asyncio.to_thread(usdc_of, w)
    opportunity = await planted_opportunity(c.engine, w)
    bought = await asyncio.to_thread(usdc_of, w) - usdc
    w.rpc.call("evm_setAutomine", [False])
    answer = await c.engine.executions["ethereum"].execute(opportunity, None)
    assert answer["status"] == "submitted", answer["error"]
    ours = answer["tx_hashes"][-1]
    nonce = int(w.rpc.call("eth_getTransactionByHash", [ours])["nonce"], 16)
    w.rpc.call("anvil_dropTransaction", [ours])
    assert w.rpc.call("eth_getTransactionByHash", [ours]) is None
    w.rpc.call("evm_setAutomine", [True])
    uni = w.dep.pool("uniswap-v2", "WETH", "USDC")
    await asyncio.to_thread(w.trader.swap, uni, w.dep.token("USDC").address, w.dep.weth, bought)
    return answer["id"], opportunity.id, ours, nonce


def counted(metric: str, **labels: str) -> float:
    return sample_value(metric, {"chain": "ethereum", **labels}) or 0.0


@pytest.mark.parametrize(
    ("fault", "resolution", "delivered"),
    [
        ("lose_answer", "received", 1),  # the node got it; the answer was lost
        ("swallow", "resent", 1),  # the node never got it: the same bytes go again
        ("late", "resent", 2),  # it reaches the node after the engine gave up: sent again
    ],
)
async def test_a_send_with_an_unknown_outcome_lands_once_and_trading_goes_on(
    w: World, tmp_path: Path, fault: FaultKind, resolution: str, delivered: int
) -> None:
    async with engine_behind_proxy(w, tmp_path) as c:
        before = counted("mevstack_send_unknown_outcome_total", resolution=resolution)
        opportunity = await planted_opportunity(c.engine, w)
        # beyond the engine's RPC answer deadline (1 s at a 1 s block time)
        c.proxy.inject("eth_sendRawTransaction", fault, seconds=3.0)
        answer = await c.engine.executions["ethereum"].execute(opportunity, None)
        assert c.proxy.injected[fault] == 1
        assert answer["status"] == "submitted", answer["error"]
        await mine_until(w, lambda: status_of(c, answer["id"]) == "included", "the trade")
        assert counted("mevstack_send_unknown_outcome_total", resolution=resolution) == before + 1
        await wait_until(
            lambda: c.proxy.forwarded["eth_sendRawTransaction"] == delivered,
            10,
            f"{delivered} copies delivered to the node",
        )
        stored = c.store.get_opportunity(opportunity.id)
        assert stored is not None and stored["status"] == "included"
        # after the fault the engine trades again, at the next nonce
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_node_that_comes_back_shorter_gets_the_lost_trade_landed_again(
    w: World, tmp_path: Path
) -> None:
    async with engine_behind_proxy(w, tmp_path) as c:
        replaced = counted("mevstack_trades_replaced_total", action="replaced")
        opportunity = await planted_opportunity(c.engine, w)
        shorter = w.rpc.call("evm_snapshot", [])
        answer = await c.engine.executions["ethereum"].execute(opportunity, None)
        trade_id = answer["id"]

        def final() -> bool:
            row = c.store.get_trade(trade_id)
            return row is not None and row.status == "included" and row.confirmations >= 1

        await mine_until(w, final, "the trade final")
        first = c.store.get_trade(trade_id)
        assert first is not None and first.block_number is not None
        # the node dies; it comes back without the trade's block (an older state, a deep reorg)
        c.proxy.down = True
        assert w.rpc.call("evm_revert", [shorter]) is True
        assert w.rpc.call("eth_getTransactionReceipt", [first.tx_hashes[-1]]) is None
        c.proxy.down = False
        await wait_until(
            lambda: status_of(c, trade_id) == "submitted", 20, "the lost trade re-opened"
        )
        stored = c.store.get_opportunity(opportunity.id)
        assert stored is not None and stored["status"] == "submitted"
        # it is replaced at its nonce (it still pays: the revert restored the opportunity)
        await mine_until(w, lambda: status_of(c, trade_id) == "included", "the trade re-landed")
        assert counted("mevstack_trades_replaced_total", action="replaced") == replaced + 1
        landed = c.store.get_trade(trade_id)
        assert landed is not None and landed.tx_hashes[-1] != first.tx_hashes[-1]
        stored = c.store.get_opportunity(opportunity.id)
        assert stored is not None and stored["status"] == "included"
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_submitted_trade_the_node_never_kept_stops_blocking_its_chain(
    w: World, tmp_path: Path
) -> None:
    """A trade left ``submitted`` by an earlier run on another chain state (the node does not
    know its transaction): settled ``failed`` after a few blocks instead of holding the chain's
    only in-flight slot for ever."""

    def leftover(store: Store) -> None:
        store.insert_trade(
            Trade(
                id="left-over",
                chain="ethereum",
                route="public",
                token=w.dep.weth,
                status="submitted",
                amount_in=WEI,
                expected_profit=1,
                tx_hashes=("0x" + secrets.token_hex(32),),
                fencing_epoch=1,
            )
        )

    async with engine_behind_proxy(w, tmp_path, before_start=leftover) as c:
        state = c.engine.executions["ethereum"].state
        await mine_until(w, lambda: status_of(c, "left-over") == "failed", "the leftover settled")
        row = c.store.get_trade("left-over")
        assert row is not None and row.error is not None and "not landed" in row.error
        await wait_until(lambda: state.in_flight.get("ethereum") == 0, 10, "nothing in flight")
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_stuck_trade_that_no_longer_pays_is_cancelled_and_trading_goes_on(
    w: World, tmp_path: Path
) -> None:
    async with engine_behind_proxy(w, tmp_path) as c:
        cancelled = counted("mevstack_trades_replaced_total", action="cancelled")
        trade_id, opportunity_id, ours, nonce = await stuck_trade(c, w)
        await mine_until(w, lambda: status_of(c, trade_id) == "failed", "the trade cancelled")
        assert counted("mevstack_trades_replaced_total", action="cancelled") == cancelled + 1
        row = c.store.get_trade(trade_id)
        assert row is not None and row.error is not None and "cancellation" in row.error
        cancel = row.error.rsplit(" ", 1)[-1]
        mined = w.rpc.call("eth_getTransactionByHash", [cancel])
        assert int(mined["nonce"], 16) == nonce and int(mined["value"], 16) == 0
        assert mined["to"].lower() == mined["from"].lower() == w.operator.address.lower()
        receipt = w.rpc.call("eth_getTransactionReceipt", [cancel])
        cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        assert row.gas_cost_wei == cost and row.net_pnl_wei == -cost
        assert w.rpc.call("eth_getTransactionReceipt", [ours]) is None
        stored = c.store.get_opportunity(opportunity_id)
        assert stored is not None and stored["status"] == "failed"
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_stuck_trade_whose_nonce_another_transaction_took_is_failed(
    w: World, tmp_path: Path
) -> None:
    async with engine_behind_proxy(w, tmp_path) as c:
        consumed = counted("mevstack_trades_replaced_total", action="nonce_consumed")
        trade_id, _, ours, nonce = await stuck_trade(c, w)
        # the same key signs something else at that nonce (another tool, an operator by hand)
        other = w.operator.sign_transaction(
            {
                "type": 2,
                "chainId": 1,
                "nonce": nonce,
                "to": w.dep.deployer,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 100 * 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        w.rpc.call("eth_sendRawTransaction", ["0x" + bytes(other.raw_transaction).hex()])
        await mine_until(w, lambda: status_of(c, trade_id) == "failed", "the trade failed")
        assert counted("mevstack_trades_replaced_total", action="nonce_consumed") == consumed + 1
        row = c.store.get_trade(trade_id)
        assert row is not None and row.error is not None and "was taken" in row.error
        assert w.rpc.call("eth_getTransactionReceipt", [ours]) is None
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_chain_that_lost_our_cancellation_gets_its_nonce_back(
    w: World, tmp_path: Path
) -> None:
    """The node comes back without a block that held our cancellation (no trade of ours in it,
    so nothing re-opens): the chain's nonce is behind ours, and the engine takes it from the
    chain instead of sending into a gap that nothing would fill."""
    async with engine_behind_proxy(w, tmp_path) as c:
        behind = counted("mevstack_nonce_resyncs_total", reason="chain_behind")
        trade_id, _, _, nonce = await stuck_trade(c, w)
        shorter = w.rpc.call("evm_snapshot", [])
        await mine_until(w, lambda: status_of(c, trade_id) == "failed", "the trade cancelled")
        assert c.engine.executions["ethereum"].nonces.next_nonce == nonce + 1
        c.proxy.down = True
        assert w.rpc.call("evm_revert", [shorter]) is True
        c.proxy.down = False
        mined = int(w.rpc.call("eth_getTransactionCount", [w.operator.address, "pending"]), 16)
        assert mined == nonce  # the cancellation went with the block
        await mine_until(
            w,
            lambda: counted("mevstack_nonce_resyncs_total", reason="chain_behind") == behind + 1,
            "the nonce taken from the chain",
        )
        assert c.engine.executions["ethereum"].nonces.next_nonce == nonce
        again = await trade_and_land(c, w)
        assert again.status == "included"
        assert_nothing_lost_or_doubled(c, w)


async def test_a_stuck_trade_waits_out_the_kill_switch_and_is_cancelled_after_it(
    w: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the kill switch on nothing is signed, not even a cancellation; the trade stays
    watched through more windows than the replacement rounds allow, instead of being given up
    while its transaction could still land, and is cancelled once the switch is released."""
    caplog.set_level(logging.WARNING, logger="mevstack.engine.execution_runtime")
    async with engine_behind_proxy(w, tmp_path) as c:
        trade_id, _, _, nonce = await stuck_trade(c, w)
        await c.engine.patch_trading_state({"kill_switch": True, "reason": "drill"})

        def refused_windows() -> int:
            return sum(
                f"trade {trade_id} not cancelled" in r.getMessage()
                and "kill switch" in r.getMessage()
                for r in caplog.records
            )

        await mine_until(w, lambda: refused_windows() > 4, "windows refused by the kill switch")
        assert status_of(c, trade_id) == "submitted"
        pending = int(w.rpc.call("eth_getTransactionCount", [w.operator.address, "pending"]), 16)
        assert pending == nonce  # nothing of ours was signed or sent meanwhile
        await c.engine.patch_trading_state({"kill_switch": False})
        await mine_until(w, lambda: status_of(c, trade_id) == "failed", "the trade cancelled")
        row = c.store.get_trade(trade_id)
        assert row is not None and row.error is not None and "cancellation" in row.error
        assert_nothing_lost_or_doubled(c, w)


async def test_a_stuck_trade_that_still_pays_is_cancelled_when_its_chain_may_not_trade(
    w: World, tmp_path: Path
) -> None:
    """A replacement passes the risk gate like a first send: in observe mode the stuck trade
    is cancelled (which frees its nonce) instead of being sent again at a higher fee."""
    async with engine_behind_proxy(w, tmp_path) as c:
        opportunity = await planted_opportunity(c.engine, w)  # the gap stays open: it pays
        w.rpc.call("evm_setAutomine", [False])
        answer = await c.engine.executions["ethereum"].execute(opportunity, None)
        assert answer["status"] == "submitted", answer["error"]
        ours = answer["tx_hashes"][-1]
        w.rpc.call("anvil_dropTransaction", [ours])
        w.rpc.call("evm_setAutomine", [True])
        replaced = counted("mevstack_trades_replaced_total", action="replaced")
        await c.engine.patch_trading_state({"mode": "observe"})
        await mine_until(w, lambda: status_of(c, answer["id"]) == "failed", "the trade cancelled")
        row = c.store.get_trade(answer["id"])
        assert row is not None and row.error is not None and "cancellation" in row.error
        assert counted("mevstack_trades_replaced_total", action="replaced") == replaced
        assert_nothing_lost_or_doubled(c, w)
