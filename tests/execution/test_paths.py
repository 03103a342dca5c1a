"""Executor paths on the real Uniswap contracts: the simulation predicts execution to the wei.

Each case moves one pool's price with a user's swap (the trigger), then runs a cycle that buys
back on that pool, with an amount drawn from a seeded RNG.  The simulator runs the exact
transaction in the next block's context; the same transaction is then mined and its gas and the
executor's balance change are compared with the prediction.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mevstack.devnet.rpc import decode_result
from mevstack.execution.deploy import Receipt, transact
from mevstack.execution.encode import ExecuteArgs, Hop
from mevstack.execution.simulate import prepare_execute
from tests.execution.world import World, simulate_and_execute

WEI = 10**18
EXECUTED_TOPIC = (
    "0x"
    + __import__("eth_utils").crypto.keccak(text="Executed(address,uint256,uint256,uint256)").hex()
)


@dataclass(frozen=True)
class Case:
    name: str
    trigger: Callable[[World], object]
    start: str
    path: Callable[[World], list[Hop]]
    flash: bool
    amount_range: tuple[int, int]  # in whole units of the start token (scaled below)


def _v2v2(w: World) -> list[Hop]:
    return [w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH")]


def _v2v3(w: World) -> list[Hop]:
    return [w.v2_hop("sushi-v2", "WETH", "USDC"), w.v3_hop(3000, "USDC", "WETH")]


def _v3v2(w: World) -> list[Hop]:
    return [w.v3_hop(500, "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH")]


def _triangle(w: World) -> list[Hop]:
    return [
        w.v2_hop("sushi-v2", "WETH", "USDC"),
        w.v3_hop(500, "USDC", "DAI"),
        w.v2_hop("uniswap-v2", "DAI", "WETH"),
    ]


def _usdt_start(w: World) -> list[Hop]:
    return [w.v2_hop("uniswap-v2", "USDT", "WETH"), w.v2_hop("sushi-v2", "WETH", "USDT")]


def _usdt_middle(w: World) -> list[Hop]:
    return [w.v2_hop("sushi-v2", "WETH", "USDT"), w.v2_hop("uniswap-v2", "USDT", "WETH")]


CASES = [
    Case(
        "v2-v2 inventory",
        lambda w: w.trigger_v2("uniswap-v2", 50 * WEI, "USDC"),
        "WETH",
        _v2v2,
        False,
        (1, 12),
    ),
    Case(
        "v2-v2 flash",
        lambda w: w.trigger_v2("uniswap-v2", 50 * WEI, "USDC"),
        "WETH",
        _v2v2,
        True,
        (1, 12),
    ),
    Case(
        "v2-v3 flash, ticks crossed",
        lambda w: w.trigger_v3(3000, 400 * WEI, "USDC"),
        "WETH",
        _v2v3,
        True,
        (30, 60),
    ),
    Case(
        "v2-v3 inventory, ticks crossed",
        lambda w: w.trigger_v3(3000, 400 * WEI, "USDC"),
        "WETH",
        _v2v3,
        False,
        (30, 60),
    ),
    Case(
        "v3-v2 inventory",
        lambda w: w.trigger_v2("uniswap-v2", 50 * WEI, "USDC"),
        "WETH",
        _v3v2,
        False,
        (1, 12),
    ),
    Case(
        "triangle flash",
        lambda w: w.trigger_v2("uniswap-v2", 40 * WEI, "DAI"),
        "WETH",
        _triangle,
        True,
        (1, 6),
    ),
    Case(
        "triangle inventory",
        lambda w: w.trigger_v2("uniswap-v2", 40 * WEI, "DAI"),
        "WETH",
        _triangle,
        False,
        (1, 6),
    ),
    Case(
        "USDT start, inventory",
        lambda w: w.trigger_v2("uniswap-v2", 30 * WEI, "USDT"),
        "USDT",
        _usdt_start,
        False,
        (3_000, 20_000),
    ),
    Case(
        "USDT middle, flash",
        lambda w: w.trigger_v2("uniswap-v2", 30 * WEI, "USDT"),
        "WETH",
        _usdt_middle,
        True,
        (1, 6),
    ),
]


def _initialized_ticks(w: World, pool: str) -> set[int]:
    ticks: set[int] = set()
    for p in w.d.v3_positions:
        if p.pool == pool:
            ticks |= {p.tick_lower, p.tick_upper}
    return ticks


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_simulation_matches_execution(world: World, case: Case) -> None:
    w = world
    rng = random.Random(f"executor-{case.name}")
    decimals = w.d.token(case.start).decimals
    amount = rng.randint(case.amount_range[0] * 10**decimals, case.amount_range[1] * 10**decimals)
    case.trigger(w)
    hops = case.path(w)
    if not case.flash:
        w.fund_executor(case.start, amount)
    v3_pools = [h.pool for h in hops if h.kind == "uniswap_v3"]
    ticks_before = {p: w.v3_tick(p) for p in v3_pools}
    start = w.token(case.start)
    args = ExecuteArgs(start, amount, tuple(hops), flash=case.flash)

    outcome = await simulate_and_execute(w, args)

    sim = outcome.simulated
    assert sim.success, sim.revert_reason
    assert outcome.receipt.status == 1
    assert sim.profit > 0
    assert sim.balance_change == sim.profit  # no coinbase share here
    assert sim.balance_change == outcome.real_change
    assert sim.gas_used == outcome.receipt.gas_used
    block = w.sync.call("eth_getBlockByNumber", [hex(outcome.receipt.block_number), False])
    assert int(block["baseFeePerGas"], 16) == sim.simulation.context.base_fee
    # The contract's own event reports the same profit.
    executed = [log for log in outcome.receipt.logs if log["topics"][0] == EXECUTED_TOPIC]
    assert len(executed) == 1
    _, profit, paid = decode_result(
        ["uint256", "uint256", "uint256"], bytes.fromhex(executed[0]["data"][2:])
    )
    assert (profit, paid) == (sim.profit, 0)
    # In flash mode nothing but the profit stays behind; in inventory mode the stake came back too.
    held = w.balance(start, w.executor)
    assert held == sim.profit + (0 if case.flash else amount)
    for pool, before in ticks_before.items():
        after = w.v3_tick(pool)
        crossed = {
            t for t in _initialized_ticks(w, pool) if min(before, after) < t <= max(before, after)
        }
        if "ticks crossed" in case.name:
            assert crossed, f"the swap on {pool} crossed no initialized tick ({before} -> {after})"


async def test_prepared_transaction_lands_as_simulated(world: World) -> None:
    """prepare_execute picks the gas limit and fees; that exact transaction is then signed."""
    w = world
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")
    args = ExecuteArgs(w.d.weth, 4 * WEI, tuple(_v2v2(w)), flash=True)
    tx, sim = await prepare_execute(
        w.rpc,
        executor=w.executor,
        operator=w.operator.address,
        args=args,
        priority_fee=10**9,
        block_time=1,
    )
    assert sim.success and sim.profit > 0
    assert sim.gas_used < tx.gas <= sim.gas_used * 125 // 100
    assert tx.max_fee_per_gas == 2 * sim.simulation.context.base_fee + 10**9
    w.sync.call("evm_setNextBlockTimestamp", [sim.simulation.context.timestamp])
    receipt = await transact(
        w.rpc, w.operator, to=tx.to, data=tx.data, gas=tx.gas, fees=(tx.max_fee_per_gas, 10**9)
    )
    assert isinstance(receipt, Receipt) and receipt.status == 1
    assert receipt.gas_used == sim.gas_used
    block = receipt.block_number
    change = w.balance(w.d.weth, w.executor, hex(block)) - w.balance(
        w.d.weth, w.executor, hex(block - 1)
    )
    assert change == sim.balance_change == sim.profit
