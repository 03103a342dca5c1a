"""A backrun is simulated as [trigger, backrun] in one block, and that block is then mined."""

from __future__ import annotations

from typing import Any

from mevstack.devnet.rpc import encode_call
from mevstack.execution.deploy import suggest_fees, wait_receipt
from mevstack.execution.encode import ExecuteArgs
from mevstack.execution.simulate import (
    TxRequest,
    build_execute_tx,
    next_block_context,
    simulate_execute,
)
from tests.execution.world import DEADLINE, EXECUTE_GAS, World

WEI = 10**18
TRIGGER_GAS = 300_000


async def test_backrun_with_its_trigger_in_one_block(world: World) -> None:
    w = world
    router = w.d.v2[0].router  # uniswap-v2
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        0,
        [w.d.weth, w.token("USDC")],
        w.d.deployer,
        DEADLINE,
    )
    max_fee, tip = await suggest_fees(w.rpc)
    trigger = TxRequest(w.d.deployer, router, swap, TRIGGER_GAS, max_fee + tip, 2 * tip, 60 * WEI)
    hops = (w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH"))
    args = ExecuteArgs(w.d.weth, 6 * WEI, hops, flash=True)
    backrun = build_execute_tx(
        executor=w.executor,
        operator=w.operator.address,
        args=args,
        gas_limit=EXECUTE_GAS,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
    )
    context = await next_block_context(w.rpc, block_time=1)

    alone = await simulate_execute(w.rpc, backrun, args, context=context)
    together = await simulate_execute(w.rpc, backrun, args, context=context, before=[trigger])
    # Without its trigger the gap is not there and the backrun would lose.
    assert not alone.success and alone.revert_reason == "no profit"
    assert together.success and together.profit > 0

    # Mine exactly that block: the trigger first (higher tip), then the signed backrun.
    w.sync.call("evm_setAutomine", [False])
    try:
        trigger_hash = w.sync.call(
            "eth_sendTransaction",
            [
                {
                    **trigger.as_call(),
                    "maxFeePerGas": hex(trigger.max_fee_per_gas),
                    "maxPriorityFeePerGas": hex(trigger.max_priority_fee_per_gas),
                }
            ],
        )
        nonce = int(w.sync.call("eth_getTransactionCount", [w.operator.address, "pending"]), 16)
        fields: dict[str, Any] = {
            "type": 2,
            "chainId": w.d.chain_id,
            "nonce": nonce,
            "to": backrun.to,
            "data": backrun.data,
            "gas": backrun.gas,
            "maxFeePerGas": backrun.max_fee_per_gas,
            "maxPriorityFeePerGas": backrun.max_priority_fee_per_gas,
            "value": 0,
        }
        signed = w.operator.sign_transaction(fields)
        backrun_hash = w.sync.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        w.sync.call("evm_setNextBlockTimestamp", [context.timestamp])
        w.sync.call("evm_mine", [])
    finally:
        w.sync.call("evm_setAutomine", [True])
    first = await wait_receipt(w.rpc, trigger_hash)
    second = await wait_receipt(w.rpc, backrun_hash)
    assert first.block_number == second.block_number == context.number
    assert (first.status, second.status) == (1, 1)
    assert first.gas_used == together.simulation.calls[0].gas_used
    assert second.gas_used == together.gas_used
    block = hex(second.block_number)
    parent = hex(second.block_number - 1)
    change = w.balance(w.d.weth, w.executor, block) - w.balance(w.d.weth, w.executor, parent)
    assert change == together.balance_change == together.profit
