"""Execution wired into the running Engine, on a real anvil devnet chain with the real Uniswap
bytecode and our executor: execute through the engine's REST app, auto-execution in live mode,
the kill switch, observe mode, and an exploit alert withdrawing a live opportunity."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak

from mevstack.api.app import create_app
from mevstack.api.auth import create_token
from mevstack.api.server import build_authenticator
from mevstack.api.store_view import StoreTokens
from mevstack.api.view import Conflict, NotAvailable
from mevstack.bus import MemoryBus, open_bus
from mevstack.config import Settings, parse_settings
from mevstack.devnet.activity import TradeIntent, swap_call
from mevstack.devnet.deploy import PoolInfo
from mevstack.devnet.rpc import encode_call
from mevstack.engine.chain_runtime import ChainRuntime
from mevstack.engine.engine import Engine
from mevstack.events import Event
from mevstack.execution.lease import RedisLease
from mevstack.store import Store, Trade
from mevstack.strategy.opportunity import Opportunity
from tests.engine.world import ExecutionWorld as World
from tests.engine.world import chain_entry
from tests.exploits.receiver import Receiver
from tests.waiting import wait_until

WEI = 10**18
SWAP_V2_TOPIC = keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)")
SWAP_V3_TOPIC = keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)")
PASSWORD_ENV = "MEVSTACK_E2E_TEST_KEY_PASSWORD"


@pytest.fixture
def w(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(PASSWORD_ENV, world.password)
    snapshot = world.rpc.call("evm_snapshot", [])
    yield world
    assert world.rpc.call("evm_revert", [snapshot]) is True


def settings_for(
    w: World,
    tmp: Path,
    *,
    mode: str,
    auto: bool,
    exploits: bool = False,
    webhook: str | None = None,
    strategies: tuple[str, ...] = ("arbitrage",),
) -> Settings:
    entry = chain_entry(
        "ethereum",
        w.node.rpc_url,
        w.dep,
        executor=w.executor,
        confirmations=1,
        strategies=list(strategies),
    )
    raw: dict[str, Any] = {
        "engine": {"state_dir": str(tmp), "mode": mode, "auto_execute": auto},
        "database": {"url": f"sqlite:///{tmp}/mevstack.db"},
        "execution": {"keystore": str(w.keystore), "password_env": PASSWORD_ENV},
        "chains": [entry],
    }
    if exploits:
        raw["exploits"] = {"block_ttl_seconds": 600}
    if webhook is not None:
        raw["notify"] = {"backoff_seconds": 0.01, "webhooks": [{"url": webhook}]}
    return parse_settings(raw, source="test", environ={})


@dataclass
class Running:
    engine: Engine
    events: list[Event]
    client: httpx.AsyncClient


@pytest.fixture
async def running(
    request: pytest.FixtureRequest, w: World, tmp_path: Path
) -> AsyncIterator[Running]:
    mode, auto, *strategies = request.param  # strategies: the chain's, arbitrage by default
    settings = settings_for(
        w,
        tmp_path,
        mode=mode,
        auto=auto,
        exploits=True,
        strategies=tuple(strategies or ["arbitrage"]),
    )
    bus = MemoryBus()
    store = Store.open(settings.database.url)
    events: list[Event] = []
    sub = await bus.subscribe("test", maxsize=100_000)

    async def collect() -> None:
        async for event in sub:
            events.append(event)

    collector = asyncio.create_task(collect())
    engine = Engine(settings, bus=bus, store=store)
    await engine.start()
    token, _ = await create_token(StoreTokens(store), "trader", "read,trade,admin")
    app = create_app(view=engine, authenticator=build_authenticator(settings, store))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://engine",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        yield Running(engine, events, client)
    finally:
        await client.aclose()
        await engine.stop()
        collector.cancel()
        sub.close()
        await bus.aclose()
        store.close()


def plant(w: World) -> tuple[int, set[str]]:
    """A large WETH→USDC buy on uniswap-v2 leaves USDC cheap there versus sushi-v2."""
    uni = w.dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = w.dep.pool("sushi-v2", "WETH", "USDC")
    w.trader.swap(uni, w.dep.weth, w.dep.token("USDC").address, 200 * WEI)
    return int(w.rpc.call("eth_blockNumber"), 16), {uni.address.lower(), sushi.address.lower()}


async def planted_opportunity(r: Running | Engine, w: World) -> Opportunity:
    at, pools = await asyncio.to_thread(plant, w)
    engine = r if isinstance(r, Engine) else r.engine
    runtime = engine.runtimes["ethereum"]

    def find() -> Opportunity | None:
        for o in runtime.book.active.values():
            if (
                {h.pool.lower() for h in o.path} == pools
                and o.token.lower() == w.dep.weth.lower()
                and o.block_number >= at
            ):
                return o
        return None

    await wait_until(lambda: find() is not None, 30, "the planted opportunity")
    found = find()
    assert found is not None
    return found


def weth_of(w: World, holder: str) -> int:
    return int(w.rpc.view(w.dep.weth, "balanceOf(address)", ["uint256"], holder))


def nonce_of(w: World) -> int:
    return int(w.rpc.call("eth_getTransactionCount", [w.operator.address, "latest"]), 16)


def live_backrun(published: list[Opportunity], trigger: str) -> Opportunity | None:
    """The latest published sighting of the backrun behind ``trigger`` while it is live."""
    found = None
    for o in published:
        if o.kind == "backrun" and str(o.trigger_tx).lower() == trigger:
            found = o if o.status == "detected" else None
    return found


async def market_with(runtime: ChainRuntime, *pools: str) -> None:
    """Wait until the runtime's market holds ``pools`` and its head stream has a block."""

    def ready() -> bool:
        known = runtime.market.pools
        return (
            known is not None
            and known.head is not None
            and all(known.info(p) is not None for p in pools)
            and runtime.services.heads.tracker.last is not None
        )

    await wait_until(ready, 30, f"the market with {len(pools)} pool(s)")


async def included_in_order(
    r: Running, w: World, trade_id: str, txs: list[str], weth_before: int
) -> Trade:
    """Wait for the trade to be included; its block holds exactly ``txs`` (in that order), its
    realized profit equals the expected one and the executor's WETH grew by exactly that."""
    store = r.engine.store

    def included() -> bool:
        row = store.get_trade(trade_id)
        return row is not None and row.status == "included"

    await wait_until(included, 30, "the backrun to be included")
    row = store.get_trade(trade_id)
    assert row is not None and row.block_number is not None and row.realized_profit is not None
    block = w.rpc.call("eth_getBlockByNumber", [hex(row.block_number), False])
    assert [h.lower() for h in block["transactions"]] == [t.lower() for t in txs]
    assert row.realized_profit > 0 and row.realized_profit == row.expected_profit
    assert weth_of(w, w.executor) - weth_before == row.realized_profit
    return row


@pytest.mark.parametrize("running", [("live", False)], indirect=True)
async def test_execute_through_the_api_grows_the_executor_by_exactly_the_realized_profit(
    running: Running, w: World
) -> None:
    r = running
    health = await r.client.get("/health")  # what the gateway routes trades by
    assert health.json()["lease"] is True
    opportunity = await planted_opportunity(r, w)
    before = weth_of(w, w.executor)
    url = f"/api/mev/opportunities/{opportunity.id}/execute"
    # sent together: one trade; the same key repeats the first answer, another key finds the
    # trade made from this sighting
    first, again, other = await asyncio.gather(
        *(r.client.post(url, headers={"Idempotency-Key": k}) for k in ("k-1", "k-1", "k-2"))
    )
    assert first.status_code == again.status_code == other.status_code == 202, first.text
    trade = first.json()["data"]
    assert trade["status"] == "submitted" and trade["opportunity_id"] == opportunity.id
    assert again.json()["data"] == trade
    assert other.json()["data"]["id"] == trade["id"]
    assert r.engine.executions["ethereum"].submitter.signer.signed == 1

    store = r.engine.store

    def settled() -> bool:
        row = store.get_trade(trade["id"])
        return row is not None and row.status == "included" and row.confirmations >= 1

    await wait_until(settled, 30, "the trade to be included")
    row = store.get_trade(trade["id"])
    assert row is not None and row.realized_profit is not None and row.realized_profit > 0
    assert weth_of(w, w.executor) - before == row.realized_profit
    receipt = w.rpc.call("eth_getTransactionReceipt", [row.tx_hashes[0]])
    gas_cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert row.gas_cost_wei == gas_cost and row.net_pnl_wei == row.realized_profit - gas_cost
    names = [e.event.value for e in r.events if e.event.value.startswith("trade.")]
    assert names[:2] == ["trade.submitted", "trade.included"]
    listed = await r.client.get(f"/api/trades/{trade['id']}")
    assert listed.status_code == 200 and listed.json()["data"]["status"] == "included"
    assert listed.json()["data"]["realized_profit"] == str(row.realized_profit)


@pytest.mark.parametrize("running", [("live", False)], indirect=True)
async def test_a_backrun_goes_out_after_its_pending_trigger_and_carries_token_units(
    running: Running, w: World
) -> None:
    r = running
    arbitrage = await planted_opportunity(r, w)
    router = next(d.router for d in w.dep.v2 if d.name == "uniswap-v2")
    path = [w.dep.weth, w.dep.token("USDC").address]
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)", 0, path, w.dep.deployer, 2**40
    )
    w.rpc.call("evm_setAutomine", [False])
    try:
        victim = str(
            w.rpc.call(
                "eth_sendTransaction",
                [
                    {
                        "from": w.dep.deployer,
                        "to": router,
                        "data": "0x" + swap.hex(),
                        "value": hex(100 * WEI),
                        "gas": hex(400_000),
                        "maxFeePerGas": hex(500 * 10**9),
                        "maxPriorityFeePerGas": hex(50 * 10**9),
                    }
                ],
            )
        )
        backrun = dataclasses.replace(
            arbitrage,
            id="backrun-" + victim[2:18],
            kind="backrun",
            trigger_tx=victim,
            token_symbol="WETH",
            token_decimals=18,
        )
        before = weth_of(w, w.executor)
        trade = await r.engine.executions["ethereum"].execute(backrun, None)
        assert trade["status"] == "submitted", trade
        assert trade["route"] == "public"  # the backrun waits behind its trigger in the pool
        assert trade["token_symbol"] == "WETH" and trade["token_decimals"] == 18
        ours = trade["tx_hashes"][-1]
        sent = w.rpc.call("eth_getTransactionByHash", [ours])
        assert sent["blockNumber"] is None  # waits in the mempool behind its trigger
        assert int(sent["maxPriorityFeePerGas"], 16) <= 50 * 10**9
        w.rpc.call("evm_mine", [])
    finally:
        w.rpc.call("evm_setAutomine", [True])
    await included_in_order(r, w, trade["id"], [victim, ours], before)
    # the trigger is mined now: the same backrun again is refused with the reason
    again = dataclasses.replace(backrun, id=backrun.id + "-again")
    with pytest.raises(Conflict, match="already mined"):
        await r.engine.executions["ethereum"].execute(again, None)


@pytest.mark.parametrize("running", [("observe", True)], indirect=True)
async def test_observe_mode_never_signs(running: Running, w: World) -> None:
    r = running
    nonce = await asyncio.to_thread(nonce_of, w)
    opportunity = await planted_opportunity(r, w)
    answer = await r.client.post(f"/api/mev/opportunities/{opportunity.id}/execute")
    assert answer.status_code == 409, answer.text
    assert "observe" in answer.json()["error"]["message"]
    assert r.engine.store.list_trades().items == []
    assert await asyncio.to_thread(nonce_of, w) == nonce


@pytest.mark.parametrize("running", [("live", True)], indirect=True)
async def test_kill_switch_stops_a_pending_auto_execution_then_auto_executes(
    running: Running, w: World
) -> None:
    r = running
    engaged = await r.client.patch(
        "/api/trading/state", json={"kill_switch": True, "reason": "drill"}
    )
    assert engaged.status_code == 200, engaged.text
    nonce = await asyncio.to_thread(nonce_of, w)
    await planted_opportunity(r, w)

    # auto-execution takes the best live opportunity of the chain (maybe not the planted one)
    def refused() -> bool:
        return any(a.action == "trade.refused" for a in r.engine.store.list_audit())

    await wait_until(refused, 20, "the pending auto-execution to be refused")
    reasons = [
        a.details["reason"] for a in r.engine.store.list_audit() if a.action == "trade.refused"
    ]
    assert reasons and all(x == "kill switch engaged" for x in reasons)
    assert r.engine.store.list_trades().items == []
    assert await asyncio.to_thread(nonce_of, w) == nonce

    released = await r.client.patch("/api/trading/state", json={"kill_switch": False})
    assert released.status_code == 200
    before = weth_of(w, w.executor)
    await planted_opportunity(r, w)  # a second push widens the gap again: a new sighting

    def included() -> bool:
        return any(t.status == "included" for t in r.engine.store.list_trades().items)

    try:
        await wait_until(included, 30, "an auto-executed trade to be included")
    except AssertionError as exc:
        refusals = r.engine.executions["ethereum"].refusals
        raise AssertionError(f"{exc}; refusals, newest first: {refusals}") from None
    trade = next(t for t in r.engine.store.list_trades().items if t.status == "included")
    assert trade.realized_profit is not None and trade.realized_profit > 0
    assert weth_of(w, w.executor) - before == trade.realized_profit


def send_victim(w: World, weth_in: int, sender: str | None = None, dex: str = "uniswap-v2") -> str:
    """A WETH→USDC buy on ``dex`` through the real Router02, left pending (automine off): on
    uniswap-v2 it leaves USDC dear there versus sushi-v2, which its backrun takes."""
    router = next(d.router for d in w.dep.v2 if d.name == dex)
    path = [w.dep.weth, w.dep.token("USDC").address]
    me = sender or w.dep.deployer
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)", 0, path, me, 2**40
    )
    tx = {
        "from": me,
        "to": router,
        "data": "0x" + swap.hex(),
        "value": hex(weth_in),
        "gas": hex(400_000),
        "maxFeePerGas": hex(500 * 10**9),
        "maxPriorityFeePerGas": hex(50 * 10**9),
    }
    return str(w.rpc.call("eth_sendTransaction", [tx])).lower()


def send_weth_in(w: World, pool: PoolInfo, weth_in: int, sender: str) -> str:
    """A swap of ``weth_in`` ETH (wrapped by the router) for the other token of ``pool``, through
    its DEX's real router, with the same fees as :func:`send_victim`; left pending."""
    out = pool.token1 if pool.token0.lower() == w.dep.weth.lower() else pool.token0
    intent = TradeIntent(0, pool, w.dep.weth, out, weth_in)
    router, data = swap_call(intent, w.dep, sender)
    if pool.kind == "uniswap_v2":  # the devnet's Router02 call takes WETH; pay in ETH instead
        data = encode_call(
            "swapExactETHForTokens(uint256,address[],address,uint256)",
            0,
            [w.dep.weth, out],
            sender,
            2**40,
        )
    tx = {
        "from": sender,
        "to": router,
        "data": "0x" + data.hex(),
        "value": hex(weth_in),
        "gas": hex(600_000),
        "maxFeePerGas": hex(500 * 10**9),
        "maxPriorityFeePerGas": hex(50 * 10**9),
    }
    return str(w.rpc.call("eth_sendTransaction", [tx])).lower()


@pytest.mark.parametrize("running", [("live", False, "backrun")], indirect=True)
async def test_a_live_backrun_is_executed_through_the_api_by_its_id(
    running: Running, w: World
) -> None:
    """The backrun agent's live backruns are what POST /execute can take by id (they are not
    in the arbitrage book); it goes out behind its trigger and is included right after it."""
    r = running
    runtime = r.engine.runtimes["ethereum"]
    await market_with(runtime, w.dep.pool("uniswap-v2", "WETH", "USDC").address)
    before = weth_of(w, w.executor)
    w.rpc.call("evm_setAutomine", [False])
    try:
        victim = send_victim(w, 100 * WEI)

        def live() -> str | None:
            for ident, o in runtime.backruns.items():
                if (o.trigger_tx or "").lower() == victim:
                    return ident
            return None

        await wait_until(lambda: live() is not None, 20, "the backrun of the victim")
        ident = live()
        assert ident is not None
        answer = await r.client.post(f"/api/mev/opportunities/{ident}/execute")
        assert answer.status_code == 202, answer.text
        trade = answer.json()["data"]
        assert trade["status"] == "submitted" and trade["opportunity_id"] == ident
        w.rpc.call("evm_mine", [])
    finally:
        w.rpc.call("evm_setAutomine", [True])
    await included_in_order(r, w, trade["id"], [victim, trade["tx_hashes"][-1]], before)


# backrun only: no arbitrage strategy runs, so nothing else competes for the auto turn
@pytest.mark.parametrize("running", [("live", True, "backrun")], indirect=True)
async def test_auto_execution_backruns_a_pending_victim_right_behind_it(
    running: Running, w: World
) -> None:
    r = running
    runtime = r.engine.runtimes["ethereum"]
    execution = r.engine.executions["ethereum"]
    await market_with(
        runtime,
        w.dep.pool("uniswap-v2", "WETH", "USDC").address,
        w.dep.pool("sushi-v2", "WETH", "USDC").address,
    )
    before = weth_of(w, w.executor)
    w.rpc.call("evm_setAutomine", [False])
    try:
        victim = send_victim(w, 100 * WEI)

        def backrun() -> dict[str, Any] | None:
            for e in r.events:
                d = e.data
                if (
                    e.event.value == "mev.opportunity"
                    and d["kind"] == "backrun"
                    and str(d["trigger_tx"]).lower() == victim
                    and d["status"] == "detected"
                ):
                    return d
            return None

        def submitted() -> Trade | None:
            found = backrun()
            if found is None:
                return None
            for trade in r.engine.store.list_trades(chain="ethereum").items:
                if trade.opportunity_id == found["id"] and trade.status == "submitted":
                    return trade
            return None

        try:
            await wait_until(lambda: submitted() is not None, 20, "the backrun auto-executed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; refusals: {execution.refusals}") from None
        found, trade = backrun(), submitted()
        assert found is not None and trade is not None
        assert trade.route == "public" and execution.submitter.signer.signed == 1
        ours = trade.tx_hashes[-1]
        sent = w.rpc.call("eth_getTransactionByHash", [ours])
        assert sent["blockNumber"] is None  # waits in the mempool behind its trigger
        assert int(sent["maxPriorityFeePerGas"], 16) <= 50 * 10**9
        w.rpc.call("evm_mine", [])
    finally:
        w.rpc.call("evm_setAutomine", [True])
    row = await included_in_order(r, w, trade.id, [victim, ours], before)
    assert row.token_symbol == "WETH" and row.token_decimals == 18

    # the executed backrun ends in its trade's outcome, published again; never "expired"
    def statuses() -> list[str]:
        return [
            e.data["status"]
            for e in r.events
            if e.event.value == "mev.opportunity" and e.data["id"] == found["id"]
        ]

    await wait_until(lambda: "included" in statuses(), 15, "the backrun to follow its trade")
    assert statuses()[-2:] == ["submitted", "included"] and "expired" not in statuses()
    stored = r.engine.store.get_opportunity(found["id"])
    assert stored is not None and stored["status"] == "included"
    assert [t.id for t in r.engine.store.list_trades(chain="ethereum").items] == [trade.id]
    assert execution.submitter.signer.signed == 1


@pytest.mark.parametrize("running", [("live", False, "backrun")], indirect=True)
async def test_a_backrun_is_priced_behind_a_pending_swap_ordered_ahead_of_its_trigger(
    running: Running, w: World
) -> None:
    r = running
    runtime = r.engine.runtimes["ethereum"]
    uni = w.dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = w.dep.pool("sushi-v2", "WETH", "USDC")
    published: list[Opportunity] = []
    runtime.opportunity_listeners.append(published.extend)

    def backrun(trigger: str) -> Opportunity | None:
        return live_backrun(published, trigger)

    await market_with(runtime, uni.address, sushi.address)
    other = str(w.rpc.call("eth_accounts", [])[4])
    before = weth_of(w, w.executor)
    w.rpc.call("evm_setAutomine", [False])
    try:
        # Two swaps through uni's WETH/USDC pair with the same fees: the one seen first is
        # ordered ahead of the other, which is the trigger.
        ahead = send_victim(w, 15 * WEI, sender=other)
        await wait_until(lambda: backrun(ahead) is not None, 20, "the first swap to be seen")
        trigger = send_victim(w, 60 * WEI)

        def priced() -> Opportunity | None:
            found = backrun(trigger)
            return found if found is not None and found.ahead_txs == (ahead,) else None

        await wait_until(lambda: priced() is not None, 20, "the backrun priced behind both")
        opportunity = priced()
        assert opportunity is not None
        assert opportunity.block_number == int(w.rpc.call("eth_blockNumber"), 16)
        assert opportunity.to_json()["ahead_txs"] == [ahead]
        trade = await r.engine.executions["ethereum"].execute(opportunity, None)
        assert trade["status"] == "submitted", trade
        ours = str(trade["tx_hashes"][-1]).lower()
        w.rpc.call("evm_mine", [])
    finally:
        w.rpc.call("evm_setAutomine", [True])
    row = await included_in_order(r, w, trade["id"], [ahead, trigger, ours], before)
    # the strategy's amounts are what the real block did: the executor (flash, nothing paid to
    # the coinbase) grew by exactly the opportunity's gross profit, which the pipeline expected
    assert row.realized_profit == opportunity.gross_profit
    receipt = w.rpc.call("eth_getTransactionReceipt", [ours])
    outs = []  # what each pool of the path paid out, in order, from its Swap event
    for log in receipt["logs"]:
        data = bytes.fromhex(log["data"][2:])
        words = [int.from_bytes(data[32 * i : 32 * i + 32], "big") for i in range(len(data) // 32)]
        if log["topics"][0] == "0x" + SWAP_V2_TOPIC.hex():
            outs.append(max(words[2], words[3]))  # amount0Out or amount1Out: one is zero
        elif log["topics"][0] == "0x" + SWAP_V3_TOPIC.hex():
            signed = [x - 2**256 if x >= 2**255 else x for x in words[:2]]
            outs.append(-min(signed))  # the pool's negative delta is what it paid
    assert outs == [h.amount_out for h in opportunity.path]


@pytest.mark.parametrize("running", [("live", False, "backrun")], indirect=True)
async def test_a_swap_landing_between_trigger_and_backrun_is_priced_and_simulated_in_place(
    running: Running, w: World
) -> None:
    """The node ranks a backrun (fees at most its trigger's, seen after everything pending)
    behind every pending transaction ranked level with it or above, not right behind its
    trigger: a swap on the backrun's path sent after the trigger lands between the two.  A
    backrun priced before that swap arrived is refused (its simulation would miss it); the one
    priced behind it realizes exactly what was expected."""
    r = running
    runtime = r.engine.runtimes["ethereum"]
    uni = w.dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = w.dep.pool("sushi-v2", "WETH", "USDC")
    published: list[Opportunity] = []
    runtime.opportunity_listeners.append(published.extend)

    def backrun(trigger: str) -> Opportunity | None:
        return live_backrun(published, trigger)

    await market_with(runtime, uni.address, sushi.address)
    other = str(w.rpc.call("eth_accounts", [])[4])
    before = weth_of(w, w.executor)
    execution = r.engine.executions["ethereum"]
    w.rpc.call("evm_setAutomine", [False])
    try:
        trigger = send_victim(w, 60 * WEI)
        await wait_until(lambda: backrun(trigger) is not None, 20, "the trigger's backrun")
        alone = backrun(trigger)
        assert alone is not None and alone.ahead_txs == () and alone.between_txs == ()
        (far,) = [h.pool.lower() for h in alone.path if h.pool.lower() != uni.address.lower()]
        # Same fees as the trigger, seen after it, through the backrun's other pool (not the
        # trigger's): the node puts it after the trigger and before the backrun.
        pool = next(p for p in w.dep.pools if p.address.lower() == far)
        between = send_weth_in(w, pool, 5 * WEI, sender=other)

        def repriced() -> Opportunity | None:
            found = backrun(trigger)
            return found if found is not None and found.between_txs == (between,) else None

        await wait_until(lambda: repriced() is not None, 20, "the backrun priced behind both")
        opportunity = repriced()
        assert opportunity is not None and opportunity.id == alone.id
        assert opportunity.to_json()["between_txs"] == [between]
        assert opportunity.gross_profit != alone.gross_profit
        # what an execution that took the first pricing sees right before its send
        with pytest.raises(Conflict, match=f"{between} now lands in front of the backrun"):
            await execution.execute(alone, None)
        assert execution.submitter.signer.signed == 0
        trade = await execution.execute(opportunity, None)
        assert trade["status"] == "submitted", trade
        ours = str(trade["tx_hashes"][-1]).lower()
        w.rpc.call("evm_mine", [])
    finally:
        w.rpc.call("evm_setAutomine", [True])
    row = await included_in_order(r, w, trade["id"], [trigger, between, ours], before)
    assert row.realized_profit == opportunity.gross_profit


@pytest.mark.parametrize("running", [("live", False)], indirect=True)
async def test_exploit_alert_blocklists_a_pool_and_withdraws_its_live_opportunity(
    running: Running, w: World
) -> None:
    r = running
    opportunity = await planted_opportunity(r, w)
    pool = opportunity.path[0].pool
    answer = await r.client.post(
        "/api/exploits",
        json={"chain": "ethereum", "severity": "high", "pools": [pool], "title": "drill"},
    )
    assert answer.status_code == 200, answer.text
    assert opportunity.id not in r.engine.runtimes["ethereum"].book.active
    expired = [
        e.data
        for e in r.events
        if e.event.value == "mev.opportunity"
        and e.data["id"] == opportunity.id
        and e.data["status"] == "expired"
    ]
    assert expired, "the withdrawn opportunity was not published as expired"
    await wait_until(
        lambda: any(e.event.value == "exploit.alert" for e in r.events), 5, "exploit.alert"
    )
    listed = (await r.client.get("/api/exploits")).json()["data"]
    assert any(i["type"] == "block" and i["address"].lower() == pool.lower() for i in listed)
    refused = await r.client.post(f"/api/mev/opportunities/{opportunity.id}/execute")
    assert refused.status_code == 409
    assert r.engine.store.list_trades().items == []


async def test_two_engines_on_redis_never_both_sign(w: World, tmp_path: Path) -> None:
    """The holder signs; stalled, its lease passes to the standby (higher epoch), which
    reconciles and only then executes; the stalled one refuses to sign."""
    ns = f"e2e-{secrets.token_hex(4)}"
    receiver = Receiver()
    settings = settings_for(w, tmp_path, mode="live", auto=False, webhook=receiver.url + "/hook")
    settings = settings.model_copy(
        update={"bus": settings.bus.model_copy(update={"url": "redis://127.0.0.1:6379/0"})}
    )
    stores = [Store.open(settings.database.url) for _ in range(2)]
    buses = [open_bus(settings.bus.url, namespace=ns) for _ in range(2)]
    lease = f"{ns}:lease"
    a = Engine(
        settings, bus=buses[0], store=stores[0], source="a", lease_name=lease, lease_ttl_ms=900
    )
    b = Engine(
        settings,
        bus=buses[1],
        store=stores[1],
        source="b",
        standby=True,
        lease_name=lease,
        lease_ttl_ms=900,
    )
    try:
        await a.start()
        await wait_until(lambda: a.health()["lease"] is True, 10, "engine a to take the lease")
        await b.start()
        assert b.health()["lease"] is False
        opportunity = await planted_opportunity(b, w)
        nonce = await asyncio.to_thread(nonce_of, w)
        with pytest.raises(NotAvailable):
            await b.execute(opportunity.id, None)
        assert await asyncio.to_thread(nonce_of, w) == nonce
        assert isinstance(a.lease, RedisLease) and isinstance(b.lease, RedisLease)
        old_epoch = a.lease.epoch
        assert old_epoch is not None

        # the gateway routes admin writes to the holder: the kill switch is engaged on a ...
        await a.patch_trading_state({"kill_switch": True, "reason": "drill on the holder"})
        a.lease.pause_renewal()  # ... and then the holder stalls
        await wait_until(lambda: b.health()["lease"] is True, 10, "the standby to take over")
        assert b.lease.epoch is not None and b.lease.epoch > old_epoch
        assert a.health()["lease"] is False
        with pytest.raises(NotAvailable):
            await a.execute(opportunity.id, None)
        # the new holder obeys the kill switch its predecessor was given
        with pytest.raises(Conflict, match="kill switch"):
            await b.execute(opportunity.id, None)
        assert b.executions["ethereum"].submitter.signer.signed == 0
        await b.patch_trading_state({"kill_switch": False})
        trade = await b.execute(opportunity.id, None)
        assert trade["status"] == "submitted"
        row = b.store.get_trade(trade["id"])
        assert row is not None and row.fencing_epoch == b.lease.epoch
        assert a.executions["ethereum"].submitter.signer.signed == 0
        assert b.executions["ethereum"].submitter.signer.signed == 1

        def included() -> bool:
            got = b.store.get_trade(trade["id"])
            return got is not None and got.status == "included"

        await wait_until(included, 30, "the standby's trade to be included")

        # humans hear of it: the lease moving (each epoch once), and the kill switch
        await b.patch_trading_state({"kill_switch": True, "reason": "drill"})

        def notices() -> list[tuple[str, str]]:
            return [(n["kind"], n["message"]) for n in receiver.received("/hook")]

        await wait_until(
            lambda: any(k == "kill_switch" for k, _ in notices()), 10, "the kill switch notice"
        )
        moved = [m for k, m in notices() if k == "lease_moved"]
        assert f"execution lease epoch {b.lease.epoch} taken by b" in moved
        assert len(moved) == len(set(moved))
    finally:
        for engine in (b, a):
            async with asyncio.timeout(10):
                await engine.stop()
        for bus in buses:
            await bus.aclose()
        for store in stores:
            store.close()
        receiver.close()


async def test_a_trade_left_between_write_ahead_and_send_is_failed_on_start_not_resent(
    w: World, tmp_path: Path
) -> None:
    """A process that died after signing (hash on the row) and before the send: the restarted
    engine resolves the row from the chain before it signs anything, and sends nothing."""
    settings = settings_for(w, tmp_path, mode="live", auto=False)
    store = Store.open(settings.database.url)
    never_sent = "0x" + secrets.token_hex(32)
    store.insert_trade(
        Trade(
            id="crashed",
            chain="ethereum",
            route="public",
            token=w.dep.weth,
            amount_in=WEI,
            expected_profit=1,
            tx_hashes=(never_sent,),
            fencing_epoch=1,
        )
    )
    nonce = await asyncio.to_thread(nonce_of, w)
    bus = MemoryBus()
    engine = Engine(settings, bus=bus, store=store)
    await engine.start()
    try:
        row = store.get_trade("crashed")
        assert row is not None and row.status == "failed"
        assert row.error is not None and "not re-sent" in row.error
        assert engine.executions["ethereum"].submitter.signer.signed == 0
        assert await asyncio.to_thread(nonce_of, w) == nonce
    finally:
        await engine.stop()
        await bus.aclose()
        store.close()
