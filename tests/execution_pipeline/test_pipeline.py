"""End to end on the devnet chain: a planted arbitrage through the gate, the executor and back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_utils.crypto import keccak

from mevstack.chain.gas import GasOracle
from mevstack.chain.rpc import RpcClient
from mevstack.config import parse_settings
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.opstack import install_op_stack_fee_contracts
from mevstack.devnet.rpc import DevnetRpc, encode_call, hexdata
from mevstack.execution.deploy import deploy_executor
from mevstack.execution.encode import ExecuteArgs, Hop, encode_balance_of
from mevstack.execution.l1fee import unsigned_eip1559, unsigned_typed_tx
from mevstack.execution.lease import LocalLease
from mevstack.execution.nonces import NonceManager
from mevstack.execution.pipeline import ChainContext, Pipeline, Plan
from mevstack.execution.risk import Candidate
from mevstack.execution.routes import (
    BundleRoute,
    PublicRoute,
    RouteKind,
    Signer,
    SubmitOutcome,
    Submitter,
)
from mevstack.execution.tracker import Tracker, refresh_native_balance
from mevstack.execution.trading_state import TradingState
from mevstack.execution.trigger import TriggerGone, load_ahead, load_trigger
from mevstack.store import Store
from tests.execution_pipeline.relay import LocalRelay

WEI = 10**18
GWEI = 10**9
RELAY_AUTH = Account.from_key("0x" + keccak(text="mevstack pipeline relay auth").hex())
OPERATOR = Account.from_key("0x" + keccak(text="mevstack pipeline operator").hex())


@dataclass
class Setup:
    node: Anvil
    d: ChainDeployment
    rpc: RpcClient
    sync: DevnetRpc
    executor: str


@pytest.fixture(scope="module")
async def setup(devnet_chain: tuple[Anvil, ChainDeployment]) -> AsyncIterator[Setup]:
    node, d = devnet_chain
    with DevnetRpc(node.rpc_url) as sync:
        snapshot = sync.call("evm_snapshot", [])
        try:
            sync.call("anvil_setBalance", [OPERATOR.address, hex(100 * WEI)])
            async with RpcClient(node.rpc_url) as rpc:
                executor = await deploy_executor(
                    rpc, OPERATOR, owner=d.deployer, wrapped_native=d.weth
                )
                yield Setup(node, d, rpc, sync, executor)
        finally:
            assert sync.call("evm_revert", [snapshot]) is True


@pytest.fixture
def s(setup: Setup) -> Iterator[Setup]:
    snapshot = setup.sync.call("evm_snapshot", [])
    yield setup
    assert setup.sync.call("evm_revert", [snapshot]) is True


def open_gap(s: Setup) -> None:
    """A large WETH→USDC buy on uniswap-v2 leaves USDC cheap there versus sushi-v2."""
    usdc = s.d.token("USDC").address
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        0,
        [s.d.weth, usdc],
        s.d.deployer,
        2**40,
    )
    # explicit gas: a node estimate made within the pair's last-update second misses the
    # price-accumulator writes the mined block may need, and the swap then runs out of gas
    router = s.d.v2[0].router
    s.sync.wait_receipts([s.sync.send(s.d.deployer, router, swap, value=50 * WEI, gas=400_000)])


def arb_args(s: Setup, amount: int = 5 * WEI) -> ExecuteArgs:
    usdc = s.d.token("USDC").address
    sushi = s.d.pool("sushi-v2", "WETH", "USDC")
    uni = s.d.pool("uniswap-v2", "WETH", "USDC")
    hops = (
        Hop(sushi.address, "uniswap_v2", s.d.weth, usdc, s.d.weth == sushi.token0, 30),
        Hop(uni.address, "uniswap_v2", usdc, s.d.weth, usdc == uni.token0, 30),
    )
    return ExecuteArgs(s.d.weth, amount, hops, flash=True)


def candidate(s: Setup, args: ExecuteArgs) -> Candidate:
    return Candidate(
        chain="ethereum",
        token=s.d.weth,
        tokens=(s.d.weth, s.d.token("USDC").address),
        pools=tuple(h.pool for h in args.path),
        trade_value_wei=args.amount_in,
        max_fee_per_gas_wei=10**10,
        net_profit_wei=1,
    )


async def weth_of(s: Setup, holder: str) -> int:
    call = {"to": s.d.weth, "data": "0x" + encode_balance_of(holder).hex()}
    raw = await s.rpc.request("eth_call", [call, "latest"])
    return int(abi_decode(["uint256"], bytes.fromhex(raw[2:]))[0])


@dataclass
class Engine:
    state: TradingState
    pipeline: Pipeline
    tracker: Tracker
    nonces: NonceManager
    events: list[tuple[str, dict[str, Any]]]


def engine(s: Setup, store: Store, *, mode: str = "live", route: Any = None) -> Engine:
    kind: RouteKind = "public" if route is None else route.kind
    settings = parse_settings(
        {
            "engine": {"mode": mode, "auto_execute": True},
            "chains": [
                {
                    "name": "ethereum",
                    "chain_id": 1,
                    "rpc": [s.node.rpc_url],
                    "wrapped_native": s.d.weth,
                    "executor": s.executor,
                }
            ],
        },
        source="test",
        environ={},
    )
    state = TradingState.load(store, settings)
    state.set_limits("ethereum", {"max_in_flight": 4}, actor="test")
    chain = ChainContext("ethereum", 1, 1.0, s.d.weth, s.executor, kind)
    events: list[tuple[str, dict[str, Any]]] = []

    async def publish(name: str, chain_name: str | None, data: Mapping[str, Any]) -> None:
        events.append((name, dict(data)))

    lease = LocalLease()
    nonces = NonceManager("ethereum", OPERATOR.address, [s.rpc], store=store)
    submitter = Submitter(
        route or PublicRoute([s.rpc]), nonces, Signer(OPERATOR, state.gate, lease), lease
    )
    pipeline = Pipeline(
        chain=chain,
        rpc=s.rpc,
        store=store,
        state=state,
        submitter=submitter,
        lease=lease,
        operator=OPERATOR.address,
        publish=publish,
    )
    tracker = Tracker(chain=chain, rpc=s.rpc, store=store, state=state, publish=publish)
    return Engine(state, pipeline, tracker, nonces, events)


def plan(s: Setup, args: ExecuteArgs) -> Plan:
    return Plan("opp-1", args, expires_at_block=10**9, priority_fee=10**9)


async def test_live_arbitrage_grows_the_executor_by_exactly_the_realized_profit(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store)
    open_gap(s)
    args = arb_args(s)
    before = await weth_of(s, s.executor)
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args), auto=True)
    assert outcome.refused is None and outcome.trade is not None, outcome.refused
    assert outcome.trade.status == "submitted" and outcome.trade.fencing_epoch == 1
    trade = await e.tracker.wait(outcome.trade.id)
    after = await weth_of(s, s.executor)
    assert trade.status == "included"
    assert trade.realized_profit is not None and trade.realized_profit > 0
    assert after - before == trade.realized_profit == trade.expected_profit
    receipt = await s.rpc.request("eth_getTransactionReceipt", [trade.tx_hashes[0]])
    gas_cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert trade.gas_cost_wei == gas_cost
    assert trade.net_pnl_wei == trade.realized_profit - gas_cost
    assert e.state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == str(trade.net_pnl_wei)
    assert [name for name, _ in e.events] == ["trade.submitted", "trade.included"]


async def test_refusals_are_recorded_and_nothing_is_signed(s: Setup, sqlite_store: Store) -> None:
    e = engine(s, sqlite_store)
    args = arb_args(s)
    nonce_before = await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"])
    # no gap opened: the path does not pay for its gas
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is None and outcome.refused is not None
    assert "simulation reverted" in outcome.refused or "below min_net_profit" in outcome.refused
    open_gap(s)
    e.state.set_kill_switch(True, actor="test", reason="drill")
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args), auto=True)
    assert outcome.refused == "kill switch engaged"
    e.state.set_kill_switch(False, actor="test")
    e.state.set_auto_execute(False, actor="test")
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args), auto=True)
    assert outcome.refused == "auto_execute is off"
    reasons = [
        a.details["reason"] for a in sqlite_store.list_audit() if a.action == "trade.refused"
    ]
    assert len(reasons) == 3
    assert sqlite_store.list_trades().items == []
    after = await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"])
    assert after == nonce_before


async def test_paper_mode_records_what_would_have_happened(s: Setup, sqlite_store: Store) -> None:
    e = engine(s, sqlite_store, mode="paper")
    open_gap(s)
    args = arb_args(s)
    nonce_before = await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"])
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is not None and outcome.trade.status == "cancelled"
    assert outcome.trade.expected_profit and outcome.trade.expected_profit > 0
    assert await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"]) == (
        nonce_before
    )


async def test_two_concurrent_trades_take_consecutive_nonces(s: Setup, sqlite_store: Store) -> None:
    e = engine(s, sqlite_store)
    open_gap(s)
    first, second = arb_args(s, 5 * WEI), arb_args(s, 3 * WEI)
    start = await e.nonces.sync()
    outcomes = await asyncio.gather(
        e.pipeline.execute(plan(s, first), candidate=candidate(s, first)),
        e.pipeline.execute(
            dataclasses.replace(plan(s, second), opportunity_id="opp-2"),
            candidate=candidate(s, second),
        ),
    )
    assert all(o.trade is not None and o.signed is not None for o in outcomes)
    assert sorted(o.signed.nonce for o in outcomes if o.signed) == [start, start + 1]
    settled = [await e.tracker.wait(o.trade.id) for o in outcomes if o.trade]
    # both were mined; the later one may find the gap closed and revert (min_profit), paying gas
    assert {t.status for t in settled} <= {"included", "reverted"}
    assert settled[0].status == "included" or settled[1].status == "included"
    total = sum(t.net_pnl_wei or 0 for t in settled)
    assert e.state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == str(total)


class DiesBeforeSending:
    """The process is killed after the write-ahead row and the signature, before the send."""

    kind = "public"

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome:
        raise SystemExit("killed")


async def test_a_crash_between_write_ahead_and_send_is_reconciled_without_a_second_send(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store, route=DiesBeforeSending())
    open_gap(s)
    args = arb_args(s)
    nonce_before = await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"])
    with pytest.raises(SystemExit):
        await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    (row,) = sqlite_store.list_trades().items
    assert row.status == "pending" and len(row.tx_hashes) == 1
    # restart: a fresh engine reconciles its in-flight rows against the chain
    restarted = engine(s, sqlite_store)
    (changed,) = await restarted.tracker.reconcile()
    assert (
        changed.id == row.id
        and changed.status == "failed"
        and "not re-sent" in (changed.error or "")
    )
    assert await s.rpc.request("eth_getTransactionByHash", [row.tx_hashes[0]]) is None
    assert await restarted.nonces.sync() == int(nonce_before, 16)
    assert await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"]) == (
        nonce_before
    )


async def test_confirmations_and_a_reorg_that_removes_the_block(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store)
    open_gap(s)
    args = arb_args(s)
    fork_point = s.sync.call("evm_snapshot", [])
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is not None
    trade = await e.tracker.wait(outcome.trade.id)
    assert trade.status == "included" and trade.confirmations == 1
    s.sync.call("anvil_mine", [hex(2)])
    (deeper,) = await e.tracker.refresh(confirmations=5)
    assert deeper.confirmations == 3 and deeper.status == "included"
    assert e.state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == str(trade.net_pnl_wei)
    # the chain switches to a branch without the trade's block
    assert s.sync.call("evm_revert", [fork_point]) is True
    s.sync.call("anvil_mine", [hex(4)])
    (back,) = await e.tracker.refresh(confirmations=5)
    assert back.status == "submitted" and back.realized_profit is None and back.net_pnl_wei is None
    assert back.block_number is None and back.confirmations == 0
    assert e.state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == "0"
    assert [name for name, _ in e.events][-1] == "trade.submitted"
    # refresh only follows settled trades: the one back in submitted waits for the tracker
    assert await e.tracker.refresh(confirmations=5) == []


async def test_a_reorg_that_re_mines_the_trade_at_the_same_height_is_seen_by_hash(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store)
    open_gap(s)
    args = arb_args(s)
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is not None and outcome.signed is not None
    trade = await e.tracker.wait(outcome.trade.id)
    assert trade.status == "included" and trade.block_hash is not None
    # the trade's block is replaced by another at the same height that includes it again; a
    # second transaction makes the new block differ even when it is mined in the same second
    # (same parent, same txs and same timestamp would give the very same block hash)
    bystander = s.sync.call("eth_accounts", [])[1]
    other_tx = {"from": bystander, "to": bystander, "value": "0x0"}
    s.sync.call("anvil_reorg", [1, [[outcome.signed.raw, 0], [other_tx, 0]]])
    receipt = await s.rpc.request("eth_getTransactionReceipt", [outcome.signed.hash])
    assert int(receipt["blockNumber"], 16) == trade.block_number
    assert receipt["blockHash"].lower() != trade.block_hash
    (again,) = await e.tracker.refresh(confirmations=5)
    assert again.status == "included" and again.block_number == trade.block_number
    assert again.block_hash == receipt["blockHash"].lower()
    assert again.realized_profit == trade.realized_profit
    # rolled back and booked once more: counted exactly once
    assert e.state.snapshot()["chains"]["ethereum"]["pnl_today_wei"] == str(again.net_pnl_wei)
    names = [name for name, _ in e.events]
    assert names == ["trade.submitted", "trade.included", "trade.submitted", "trade.included"]
    assert await e.tracker.refresh(confirmations=5) == []


async def test_on_an_op_stack_chain_gas_cost_includes_the_l1_data_fee(
    s: Setup, sqlite_store: Store
) -> None:
    # the devnet's optimism chain: plain anvil plus the GasPriceOracle / L1Block predeploys
    install_op_stack_fee_contracts(s.sync)
    e = engine(s, sqlite_store)
    open_gap(s)
    args = arb_args(s)
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is not None and outcome.signed is not None
    trade = await e.tracker.wait(outcome.trade.id)
    receipt = await s.rpc.request("eth_getTransactionReceipt", [outcome.signed.hash])
    assert "l1Fee" not in receipt  # anvil does not report it: the oracle is asked
    unsigned = unsigned_typed_tx(bytes.fromhex(outcome.signed.raw[2:]))
    # the unsigned encoding is exactly what the operator signed
    sent = await s.rpc.request("eth_getTransactionByHash", [outcome.signed.hash])
    vrs = (int(sent["v"], 16), int(sent["r"], 16), int(sent["s"], 16))
    assert Account._recover_hash(keccak(unsigned), vrs=vrs) == OPERATOR.address
    # and the gate's encoding of the same transaction agrees byte for byte
    fields = ("chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "value")
    as_signed = {k: int(sent[k], 16) for k in fields} | {"to": sent["to"], "data": sent["input"]}
    assert unsigned_eip1559(as_signed) == unsigned
    oracle = GasOracle("optimism", s.rpc, chain_id=1)
    l1_fee = await oracle.l1_fee(unsigned)
    assert l1_fee is not None and l1_fee > 0 and oracle.model == "op_stack"
    l2_cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert trade.gas_cost_wei == l2_cost + l1_fee
    assert trade.realized_profit is not None
    assert trade.net_pnl_wei == trade.realized_profit - l2_cost - l1_fee


async def test_operator_balance_below_the_floor_pauses_the_chain(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store)
    open_gap(s)
    args = arb_args(s)
    balance = await refresh_native_balance(s.rpc, e.state, "ethereum", OPERATOR.address)
    assert balance == int(await s.rpc.request("eth_getBalance", [OPERATOR.address, "latest"]), 16)
    assert 0 < balance < 100 * WEI  # funded with 100, minus the executor's deployment
    e.state.set_limits("ethereum", {"min_native_balance_wei": str(balance + 1)}, actor="test")
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is None and "below the floor" in (outcome.refused or "")
    assert e.state.snapshot()["chains"]["ethereum"]["paused"] is True
    e.state.set_limits("ethereum", {"min_native_balance_wei": str(balance)}, actor="test")
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert outcome.trade is not None and outcome.trade.status == "submitted"


class KillSwitchDuringSimulation:
    """The real node; an operator hits the kill switch while the simulation is running."""

    def __init__(self, inner: RpcClient, state: TradingState) -> None:
        self.inner = inner
        self.state = state

    async def request(self, method: str, params: list[Any]) -> Any:
        if method == "eth_simulateV1" and not self.state.kill_switch:
            self.state.set_kill_switch(True, actor="operator", reason="drill")
        return await self.inner.request(method, params)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        return await self.inner.batch(calls)


async def test_the_kill_switch_stops_an_auto_execution_already_past_the_gate(
    s: Setup, sqlite_store: Store
) -> None:
    e = engine(s, sqlite_store)
    e.pipeline.rpc = KillSwitchDuringSimulation(s.rpc, e.state)
    open_gap(s)
    args = arb_args(s)
    nonce_before = await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"])
    outcome = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args), auto=True)
    assert outcome.trade is not None and outcome.trade.status == "failed"
    assert "kill switch" in (outcome.trade.error or "") and outcome.trade.tx_hashes == ()
    assert [name for name, _ in e.events] == ["trade.failed"]
    assert await s.rpc.request("eth_getTransactionCount", [OPERATOR.address, "pending"]) == (
        nonce_before
    )
    assert e.nonces.next_nonce == int(nonce_before, 16)


def send_victim(s: Setup, value: int = 50 * WEI, sender: str | None = None) -> str:
    """The gap-opening swap of :func:`open_gap`, left pending (automine off), tipping 2 gwei."""
    usdc = s.d.token("USDC").address
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        0,
        [s.d.weth, usdc],
        s.d.deployer,
        2**40,
    )
    s.sync.call("evm_setAutomine", [False])
    tx = {
        "from": sender or s.d.deployer,
        "to": s.d.v2[0].router,
        "data": hexdata(swap),
        "value": hex(value),
        "gas": hex(400_000),
        "maxFeePerGas": hex(100 * GWEI),
        "maxPriorityFeePerGas": hex(2 * GWEI),
    }
    return str(s.sync.call("eth_sendTransaction", [tx]))


@pytest.fixture
async def devnet_relay(s: Setup) -> AsyncIterator[LocalRelay]:
    relay = LocalRelay(s.node.rpc_url)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        s.sync.call("evm_setAutomine", [True])


async def test_backrun_lands_as_a_bundle_right_after_its_pending_trigger(
    s: Setup, sqlite_store: Store, devnet_relay: LocalRelay
) -> None:
    args = arb_args(s)
    route = BundleRoute([devnet_relay.url], RELAY_AUTH, s.rpc, block_time=1.0)
    e = engine(s, sqlite_store, route=route)
    # another swap through the same pair, same fees, seen first: a node orders it ahead of the
    # trigger, so the backrun is priced behind both and the bundle must carry both
    other = str(s.sync.call("eth_accounts", [])[4])
    ahead_hash = send_victim(s, 10 * WEI, sender=other)
    victim = send_victim(s)
    trigger = await load_trigger(s.rpc, victim)
    assert trigger.hash == victim and trigger.request.max_priority_fee_per_gas == 2 * GWEI
    ahead = await load_ahead(s.rpc, [ahead_hash])
    assert [a.hash for a in ahead] == [ahead_hash]
    assert ahead[0].raw == await s.rpc.request("eth_getRawTransactionByHash", [ahead_hash])
    # without its trigger the path has no gap: the gate refuses it
    alone = await e.pipeline.execute(plan(s, args), candidate=candidate(s, args))
    assert alone.trade is None and alone.refused is not None
    assert alone.refused.startswith("simulation reverted")
    before = await weth_of(s, s.executor)
    backrun = Plan.backrun(plan(s, args), trigger, ahead)
    outcome = await e.pipeline.execute(backrun, candidate=candidate(s, args))
    assert outcome.refused is None and outcome.trade is not None, outcome.refused
    assert outcome.trade.route == "bundle" and outcome.signed is not None
    # priced never above its trigger
    sent = await s.rpc.request("eth_getTransactionByHash", [outcome.signed.hash])
    assert int(sent["maxPriorityFeePerGas"], 16) <= 2 * GWEI
    assert int(sent["maxFeePerGas"], 16) <= 100 * GWEI
    trade = await e.tracker.wait(outcome.trade.id)
    assert trade.status == "included"
    order = [ahead_hash, victim, outcome.signed.hash]
    assert devnet_relay.received == [(trade.block_number, order)]
    assert devnet_relay.included[-1].tx_hashes == order
    assert trade.tx_hashes == tuple(order)
    block = await s.rpc.request("eth_getBlockByNumber", [hex(trade.block_number or 0), False])
    assert block["transactions"] == order
    after = await weth_of(s, s.executor)
    assert trade.realized_profit is not None and trade.realized_profit > 0
    assert after - before == trade.realized_profit == trade.expected_profit
    with pytest.raises(TriggerGone, match="already mined"):
        await load_trigger(s.rpc, victim)


async def test_backrun_is_refused_when_its_trigger_is_mined_or_dropped_before_the_send(
    s: Setup, sqlite_store: Store
) -> None:
    args = arb_args(s)
    e = engine(s, sqlite_store)
    victim = send_victim(s)
    try:
        backrun = Plan.backrun(plan(s, args), await load_trigger(s.rpc, victim))
        s.sync.call("evm_mine", [])  # the trigger lands on its own before we send
        outcome = await e.pipeline.execute(backrun, candidate=candidate(s, args))
        assert outcome.trade is None and outcome.refused is not None
        assert f"trigger {victim} is already mined" in outcome.refused
        assert e.pipeline.submitter.signer.signed == 0
        dropped = send_victim(s)
        assert s.sync.call("anvil_dropTransaction", [dropped]) is not None
        with pytest.raises(TriggerGone, match="dropped or replaced"):
            await load_trigger(s.rpc, dropped)
        # a transaction it was priced behind is dropped before the send: no price holds
        other = str(s.sync.call("eth_accounts", [])[4])
        ahead_hash = send_victim(s, 10 * WEI, sender=other)
        victim = send_victim(s)
        backrun = Plan.backrun(
            plan(s, args), await load_trigger(s.rpc, victim), await load_ahead(s.rpc, [ahead_hash])
        )
        assert s.sync.call("anvil_dropTransaction", [ahead_hash]) is not None
        outcome = await e.pipeline.execute(backrun, candidate=candidate(s, args))
        assert outcome.trade is None and outcome.refused is not None
        assert f"ahead transaction {ahead_hash} is no longer known" in outcome.refused
        assert e.pipeline.submitter.signer.signed == 0
    finally:
        s.sync.call("evm_setAutomine", [True])
