"""Backruns against the real devnet: pending victims sit in anvil's mempool (automine off), are
read back from the node, decoded, applied and searched; the numbers are then checked against the
chain — simulated as [victim, backrun] with the executor, and executed for real after mining."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.execution.deploy import Receipt, deploy_executor, suggest_fees, transact
from mevstack.execution.encode import ExecuteArgs, Hop, encode_balance_of
from mevstack.execution.simulate import (
    BlockContext,
    TxRequest,
    build_execute_tx,
    next_block_context,
    simulate_execute,
)
from mevstack.market.base import DexSpec, PoolInfo, same_state
from mevstack.market.pools import KINDS
from mevstack.market.state import load_pools
from mevstack.strategy.arbitrage import ChainTerms
from mevstack.strategy.backrun import (
    ROUTER_FACTORY_SIGNATURE,
    BackrunBook,
    BackrunSearch,
    Venues,
    Withdrawal,
    learn_router,
)
from mevstack.strategy.mempool import PendingSwap, decode_transaction
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.valuation import GasInputs
from tests.strategy_backrun.abi import ROUTER02, SWAP_ROUTER, calldata, v3_path

# Anvil's development account #1 operates the executor (its key is public by design).
OPERATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
E18 = 10**18
DEADLINE = 2**40
VICTIM_GAS = 600_000
EXECUTE_GAS = 1_500_000
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
DETECTED = "2026-11-25T07:00:00.000Z"


@dataclass
class World:
    node: Anvil
    d: ChainDeployment
    rpc: RpcClient
    sync: DevnetRpc
    operator: LocalAccount
    executor: str
    infos: list[PoolInfo]

    def token(self, symbol: str) -> str:
        return self.d.token(symbol).address

    def balance(self, token: str, holder: str, block: str = "latest") -> int:
        call = {"to": token, "data": "0x" + encode_balance_of(holder).hex()}
        return int(self.sync.call("eth_call", [call, block]), 16)

    def search(self) -> BackrunSearch:
        """Routers are learnt the way the engine learns them: from their ``factory()``."""
        d = self.d
        dexes = [DexSpec(v.name, "uniswap_v2", v.factory) for v in d.v2]
        dexes.append(DexSpec(d.v3.name, "uniswap_v3", d.v3.factory))
        venues = Venues(d.weth)
        for router in [*(v.router for v in d.v2), d.v3.swap_router]:
            factory = self.sync.view(router, ROUTER_FACTORY_SIGNATURE, ["address"])
            venues = learn_router(venues, router, factory, dexes)
        assert len(venues.v2_routers) == 2 and len(venues.v3_routers) == 1
        return BackrunSearch(ChainTerms("devnet", d.chain_id, (d.weth,), d.weth), venues)

    async def states(self, block: int, only: set[str] | None = None) -> dict[str, Any]:
        infos = [i for i in self.infos if only is None or i.address in only]
        return {
            info.address: state for info, state in await load_pools(self.rpc, KINDS, infos, block)
        }

    def head(self) -> int:
        return int(self.sync.call("eth_blockNumber"), 16)

    def send_pending(self, to: str, data: bytes, value: int = 0, **extra: Any) -> dict[str, Any]:
        """Send from the deployer with automine off; the tx as the node reports it, pending."""
        tx = {"from": self.d.deployer, "to": to, "data": "0x" + data.hex(), "value": hex(value),
              "gas": hex(VICTIM_GAS), **extra}  # fmt: skip
        tx_hash = self.sync.call("eth_sendTransaction", [tx])
        seen = self.sync.call("eth_getTransactionByHash", [tx_hash])
        assert seen is not None and seen["blockNumber"] is None
        return dict(seen)

    def txpool(self) -> dict[str, dict[str, Any]]:
        """Pending txs by hash, from ``txpool_content``."""
        content = self.sync.call("txpool_content", [])
        return {
            str(tx["hash"]).lower(): tx
            for by_nonce in content["pending"].values()
            for tx in by_nonce.values()
        }

    def mine(self, timestamp: int) -> None:
        self.sync.call("evm_setNextBlockTimestamp", [timestamp])
        self.sync.call("evm_mine", [])


def market_infos(d: ChainDeployment) -> list[PoolInfo]:
    return [
        PoolInfo(p.dex, p.kind, p.address, p.token0, p.token1,
                 p.fee_bps if p.kind == "uniswap_v2" else p.fee, p.tick_spacing, 0)
        for p in d.pools
    ]  # fmt: skip


@pytest.fixture(scope="module")
def module_sync(devnet_chain: tuple[Anvil, ChainDeployment]) -> Iterator[DevnetRpc]:
    node, _ = devnet_chain
    with DevnetRpc(node.rpc_url) as sync:
        snapshot = sync.call("evm_snapshot", [])
        try:
            yield sync
        finally:
            sync.call("evm_setAutomine", [True])
            assert sync.call("evm_revert", [snapshot]) is True


@pytest.fixture(scope="module")
async def world_module(
    devnet_chain: tuple[Anvil, ChainDeployment], module_sync: DevnetRpc
) -> AsyncIterator[World]:
    node, d = devnet_chain
    operator: LocalAccount = Account.from_key(OPERATOR_KEY)
    async with RpcClient(node.rpc_url) as rpc:
        executor = await deploy_executor(rpc, operator, owner=d.deployer, wrapped_native=d.weth)
        # The executor trades its own WETH; the victim (the deployer) may pay WBTC on V3.
        module_sync.transact(d.deployer, d.weth, encode_call("deposit()"), value=2000 * E18)
        module_sync.transact(
            d.deployer, d.weth, encode_call("transfer(address,uint256)", executor, 2000 * E18)
        )
        module_sync.transact(
            d.deployer,
            d.token("WBTC").address,
            encode_call("approve(address,uint256)", d.v3.swap_router, 2**256 - 1),
        )
        yield World(node, d, rpc, module_sync, operator, executor, market_infos(d))


@pytest.fixture
def world(world_module: World) -> Iterator[World]:
    sync = world_module.sync
    snapshot = sync.call("evm_snapshot", [])
    sync.call("evm_setAutomine", [False])
    try:
        yield world_module
    finally:
        sync.call("evm_setAutomine", [True])
        assert sync.call("evm_revert", [snapshot]) is True


def execute_args(w: World, states: dict[str, Any], opp: Opportunity) -> ExecuteArgs:
    hops = []
    for h in opp.path:
        state = states[h.pool]
        fee = state.fee_bps if state.kind == "uniswap_v2" else state.fee
        hops.append(
            Hop(h.pool, state.kind, h.token_in, h.token_out, h.token_in == state.token0, fee)
        )
    return ExecuteArgs(opp.token, opp.amount_in, tuple(hops))


def transfers_out(logs: Any, pool: str, token: str) -> list[int]:
    """Amounts of ``token`` the ``pool`` sent, from a call's Transfer logs."""
    return [
        int(log["data"], 16)
        for log in logs
        if log["topics"][0] == TRANSFER_TOPIC
        and str(log["address"]).lower() == token.lower()
        and log["topics"][1][-40:] == pool.lower()[2:]
    ]


@pytest.mark.parametrize("venue", ["router02", "swap_router"])
async def test_pending_victim_gives_a_backrun_that_executes_to_the_wei(
    world: World, venue: str
) -> None:
    w, d = world, world.d
    head = w.head()
    states = await w.states(head)
    search = w.search()
    search.add_pools(states.values())
    usdc = w.token("USDC")
    if venue == "router02":
        to = next(v.router for v in d.v2 if v.name == "uniswap-v2")
        data = calldata(ROUTER02, "swapExactETHForTokens", 1, [d.weth, usdc], d.deployer, DEADLINE)
        victim_pool = d.pool("uniswap-v2", "WETH", "USDC").address
    else:
        to = d.v3.swap_router
        params = (d.weth, usdc, 3000, d.deployer, DEADLINE, 150 * E18, 1, 0)
        data = calldata(SWAP_ROUTER, "exactInputSingle", params)
        victim_pool = d.pool("uniswap-v3", "WETH", "USDC", 3000).address
    raw = w.send_pending(to, data, 150 * E18)
    assert raw["hash"].lower() in w.txpool()
    victim = decode_transaction(raw)
    assert victim is not None and len(victim.swaps) == 1

    context: BlockContext = await next_block_context(w.rpc, block_time=1)
    result = search.search(
        victim,
        states,
        block_number=head,
        timestamp=context.timestamp,
        gas=GasInputs(context.base_fee),
        detected_at=DETECTED,
    )
    assert result.effect is not None and result.opportunities, result.reason
    best = result.opportunities[0]
    assert best.kind == "backrun" and best.trigger_tx == victim.tx_hash
    assert best.gross_profit > 0 and best.net_profit_wei > 0
    changed = result.effect.changed
    assert changed == {victim_pool}
    assert changed & {h.pool for h in best.path}

    # 1. Simulated together, [victim, backrun] in the next block: every amount to the wei.
    args = execute_args(w, states, best)
    max_fee, tip = await suggest_fees(w.rpc)
    tx = build_execute_tx(
        executor=w.executor,
        operator=w.operator.address,
        args=args,
        gas_limit=EXECUTE_GAS,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
    )
    together = await simulate_execute(
        w.rpc, tx, args, context=context, before=[TxRequest.from_rpc(raw)]
    )
    assert together.success, together.revert_reason
    assert together.profit == together.balance_change == best.gross_profit
    victim_call, backrun_call = together.simulation.calls
    (victim_swap,) = result.effect.swaps
    assert transfers_out(victim_call.logs, victim_swap.pool, usdc) == [victim_swap.amount_out]
    for hop in best.path:
        assert transfers_out(backrun_call.logs, hop.pool, hop.token_out) == [hop.amount_out]

    # 2. Mined: the victim leaves exactly the post-trigger states we computed ...
    w.mine(context.timestamp)
    receipt = w.sync.call("eth_getTransactionReceipt", [victim.tx_hash])
    assert int(receipt["status"], 16) == 1 and int(receipt["blockNumber"], 16) == head + 1
    after = await w.states(head + 1, set(changed))
    for address in changed:
        assert same_state(after[address], result.effect.states[address])
    # ... and the backrun, executed for real on it, earns exactly the gross profit.
    w.sync.call("evm_setAutomine", [True])
    before = w.balance(best.token, w.executor)
    sent = await transact(w.rpc, w.operator, to=w.executor, data=tx.data, gas=EXECUTE_GAS)
    assert isinstance(sent, Receipt) and sent.status == 1
    assert w.balance(best.token, w.executor) - before == best.gross_profit


async def apply_and_mine(w: World, search: BackrunSearch, raw: dict[str, Any]) -> PendingSwap:
    """Decode and apply a pending victim on the head state, mine it, compare with the chain."""
    head = w.head()
    victim = decode_transaction(raw)
    assert victim is not None
    states = await w.states(head)
    search.add_pools(states.values())
    context = await next_block_context(w.rpc, block_time=1)
    result = search.search(
        victim,
        states,
        block_number=head,
        timestamp=context.timestamp,
        gas=GasInputs(context.base_fee),
        detected_at=DETECTED,
    )
    assert result.effect is not None, result.reason
    w.mine(context.timestamp)
    receipt = w.sync.call("eth_getTransactionReceipt", [victim.tx_hash])
    assert int(receipt["status"], 16) == 1
    changed = set(result.effect.changed)
    after = await w.states(head + 1, changed)
    for address in changed:
        assert same_state(after[address], result.effect.states[address]), address
    return victim


async def test_router_variants_apply_exactly_and_reverts_are_predicted(world: World) -> None:
    w, d = world, world.d
    search = w.search()
    router = next(v.router for v in d.v2 if v.name == "sushi-v2")
    dai, usdc, wbtc = w.token("DAI"), w.token("USDC"), w.token("WBTC")
    # Router02 exact output, paid in ETH with change
    out = calldata(
        ROUTER02, "swapETHForExactTokens", 50_000 * E18, [d.weth, dai], d.deployer, DEADLINE
    )
    await apply_and_mine(w, search, w.send_pending(router, out, 40 * E18))
    # SwapRouter multicall: exact input single in ETH, then refundETH
    single = calldata(
        SWAP_ROUTER,
        "exactInputSingle",
        (d.weth, usdc, 500, d.deployer, DEADLINE, 30 * E18, 0, 0),
    )
    refund = calldata(SWAP_ROUTER, "refundETH")
    multi = calldata(SWAP_ROUTER, "multicall", [single, refund])
    await apply_and_mine(w, search, w.send_pending(d.v3.swap_router, multi, 30 * E18))
    # SwapRouter exact output over two pools (WBTC -> WETH -> USDC), paid in WBTC
    path = v3_path(usdc, 3000, d.weth, 3000, wbtc)
    exact_out = calldata(
        SWAP_ROUTER, "exactOutput", (path, d.deployer, DEADLINE, 150_000 * 10**6, 10**9)
    )
    await apply_and_mine(w, search, w.send_pending(d.v3.swap_router, exact_out))

    # A victim whose amountOutMin cannot be met: predicted to revert, and it does.
    head = w.head()
    states = await w.states(head)
    greedy = calldata(
        ROUTER02, "swapExactETHForTokens", 10**30, [d.weth, usdc], d.deployer, DEADLINE
    )
    raw = w.send_pending(router, greedy, E18)
    victim = decode_transaction(raw)
    assert victim is not None
    context = await next_block_context(w.rpc, block_time=1)
    result = search.search(
        victim, states, block_number=head, timestamp=context.timestamp,
        gas=GasInputs(context.base_fee), detected_at=DETECTED,
    )  # fmt: skip
    assert result.opportunities == [] and result.reason is not None
    assert "INSUFFICIENT_OUTPUT_AMOUNT" in result.reason
    w.mine(context.timestamp)
    receipt = w.sync.call("eth_getTransactionReceipt", [victim.tx_hash])
    assert int(receipt["status"], 16) == 0


async def test_replaced_trigger_withdraws_its_backrun(world: World) -> None:
    w, d = world, world.d
    router = next(v.router for v in d.v2 if v.name == "uniswap-v2")
    data = calldata(
        ROUTER02, "swapExactETHForTokens", 1, [d.weth, w.token("USDC")], d.deployer, DEADLINE
    )
    max_fee, tip = await suggest_fees(w.rpc)
    fees = {"maxFeePerGas": hex(max_fee), "maxPriorityFeePerGas": hex(tip)}
    first = decode_transaction(w.send_pending(router, data, 100 * E18, **fees))
    assert first is not None
    book = BackrunBook()
    assert book.track(first.sender, first.nonce, first.tx_hash, ["opp-1"]) == []
    # The victim speeds up: same nonce, higher fees, another amount (so another hash).
    bumped = {"maxFeePerGas": hex(2 * max_fee), "maxPriorityFeePerGas": hex(2 * tip),
              "nonce": hex(first.nonce)}  # fmt: skip
    second = decode_transaction(w.send_pending(router, data, 101 * E18, **bumped))
    assert second is not None and second.nonce == first.nonce
    assert set(w.txpool()) == {second.tx_hash}  # the node dropped the first
    assert book.track(second.sender, second.nonce, second.tx_hash, ["opp-2"]) == [
        Withdrawal(first.tx_hash, "replaced", ("opp-1",))
    ]
    assert book.retain(w.txpool()) == []
    w.sync.call("evm_mine", [])
    mined = w.sync.call("eth_getTransactionByHash", [second.tx_hash])
    assert mined["blockNumber"] is not None
    assert book.mined(mined["from"], int(mined["nonce"], 16), mined["hash"]) == [
        Withdrawal(second.tx_hash, "mined", ("opp-2",))
    ]
