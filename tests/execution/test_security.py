"""Attacks on the executor fail, and the roles do what they say, on the real Uniswap contracts."""

from __future__ import annotations

import vyper
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from mevstack.devnet.rpc import encode_call
from mevstack.execution.deploy import Receipt, transact, wait_receipt
from mevstack.execution.encode import (
    ExecuteArgs,
    Hop,
    encode_execute,
    encode_set_operator,
    encode_withdraw_token,
)
from mevstack.execution.simulate import TxRequest, next_block_context, simulate
from tests.execution.world import World, simulate_and_execute

WEI = 10**18

# A contract posing as a V3 pool: it calls the executor's swap callback claiming a debt.
FAKE_POOL = """
# pragma version 0.4.3
interface Callback:
    def uniswapV3SwapCallback(a0: int256, a1: int256, data: Bytes[32]): nonpayable

@external
def attack(executor: address, owed: int256):
    extcall Callback(executor).uniswapV3SwapCallback(owed, 0, b"")
"""


# A fake "pool" a leaked operator key might route through: on the first hop it claims an output
# it never pays; on the second it asks the executor's callback for that amount of the token.
DRAINING_POOL = """
# pragma version 0.4.3
interface Callback:
    def uniswapV3SwapCallback(a0: int256, a1: int256, data: Bytes[32]): nonpayable

claim: int256

@deploy
def __init__(claim: int256):
    self.claim = claim

@external
def swap(
    to: address, zfo: bool, amount: int256, limit: uint160, data: Bytes[32]
) -> (int256, int256):
    if amount == 1:
        return (1, -self.claim)
    extcall Callback(msg.sender).uniswapV3SwapCallback(0, amount, b"")
    return (0, amount)
"""


async def _send(w: World, account: LocalAccount, to: str | None, data: bytes) -> Receipt:
    receipt = await transact(w.rpc, account, to=to, data=data, gas=1_000_000)
    assert isinstance(receipt, Receipt)
    return receipt


async def _expect_revert(
    w: World, account: LocalAccount, to: str, data: bytes, reason: str
) -> None:
    """The simulation names the reason, and the real transaction reverts."""
    context = await next_block_context(w.rpc, block_time=1)
    tx = TxRequest(account.address, to, data, 1_000_000, 10**11, 10**9)
    sim = await simulate(w.rpc, [tx], context=context)
    assert not sim.success
    assert sim.last.revert_reason == reason
    receipt = await _send(w, account, to, data)
    assert receipt.status == 0


def _cycle(w: World) -> ExecuteArgs:
    hops = (w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH"))
    return ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=True)


async def test_non_operator_cannot_execute(world: World) -> None:
    w = world
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")
    data = encode_execute(_cycle(w))
    await _expect_revert(w, w.attacker, w.executor, data, "not operator")
    # Not even the owner executes: that is the operator's job alone.
    tx = w.sync.send(w.owner, w.executor, data, gas=1_000_000)
    assert (await wait_receipt(w.rpc, tx)).status == 0


async def test_operator_cannot_withdraw_or_change_roles(world: World) -> None:
    w = world
    w.fund_executor_weth(3 * WEI)
    op = w.operator
    await _expect_revert(
        w, op, w.executor, encode_withdraw_token(w.d.weth, op.address, WEI), "not owner"
    )
    native = encode_call("withdraw_native(address,uint256)", op.address, 0)
    await _expect_revert(w, op, w.executor, native, "not owner")
    await _expect_revert(w, op, w.executor, encode_set_operator(w.attacker.address), "not owner")
    owner_set = encode_call("set_owner(address)", op.address)
    await _expect_revert(w, op, w.executor, owner_set, "not owner")
    assert w.balance(w.d.weth, w.executor) == 3 * WEI


async def test_owner_withdraws_tokens_including_usdt(world: World) -> None:
    w = world
    w.fund_executor_weth(2 * WEI)
    w.fund_executor("USDT", 1_000_000)
    usdt = w.token("USDT")
    before = w.balance(usdt, w.owner)
    for token, amount in ((w.d.weth, 2 * WEI), (usdt, 1_000_000)):
        w.send_from_deployer(w.executor, encode_withdraw_token(token, w.owner, amount))
        assert w.balance(token, w.executor) == 0
    assert w.balance(usdt, w.owner) == before + 1_000_000


async def test_owner_rotates_the_operator(world: World) -> None:
    w = world
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")
    w.send_from_deployer(w.executor, encode_set_operator(w.attacker.address))
    assert w.sync.view(w.executor, "operator()", ["address"]) == w.attacker.address
    await _expect_revert(w, w.operator, w.executor, encode_execute(_cycle(w)), "not operator")


async def test_fake_pool_cannot_call_the_v3_callback(world: World) -> None:
    w = world
    w.fund_executor_weth(5 * WEI)
    out = vyper.compile_code(FAKE_POOL, output_formats=["bytecode"])
    receipt = await _send(w, w.attacker, None, bytes.fromhex(out["bytecode"][2:]))
    fake = receipt.contract_address
    assert fake is not None
    attack = encode_call("attack(address,int256)", w.executor, 5 * WEI)
    await _expect_revert(w, w.attacker, fake, attack, "bad caller")
    # Calling the callback directly from an account fails the same way.
    direct = encode_call("uniswapV3SwapCallback(int256,int256,bytes)", 5 * WEI, 0, b"")
    await _expect_revert(w, w.attacker, w.executor, direct, "bad caller")
    assert w.balance(w.d.weth, w.executor) == 5 * WEI


async def test_genuine_pair_flash_callback_triggered_by_someone_else(world: World) -> None:
    """Someone swaps on a real pair with ``to = executor`` and data: the callback refuses."""
    w = world
    w.fund_executor_weth(5 * WEI)
    pair = w.d.pool("uniswap-v2", "WETH", "USDC")
    usdc_out = 1_000_000
    amounts = (0, usdc_out) if pair.token1 == w.token("USDC") else (usdc_out, 0)
    data = encode_call(
        "swap(uint256,uint256,address,bytes)", amounts[0], amounts[1], w.executor, b"\x01"
    )
    await _expect_revert(w, w.attacker, pair.address, data, "bad caller")
    assert w.balance(w.d.weth, w.executor) == 5 * WEI
    assert w.balance(w.token("USDC"), w.executor) == 0


async def test_losing_path_reverts(world: World) -> None:
    """Without a price gap, a cycle only pays fees: the executor refuses to lose."""
    w = world
    w.fund_executor_weth(5 * WEI)
    hops = (w.v2_hop("uniswap-v2", "WETH", "USDC"), w.v2_hop("sushi-v2", "USDC", "WETH"))
    for flash in (False, True):
        args = ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=flash)
        outcome = await simulate_and_execute(w, args)
        assert not outcome.simulated.success
        assert outcome.simulated.revert_reason == "no profit"
        assert outcome.simulated.profit == 0
        assert outcome.receipt.status == 0
        assert outcome.real_change == 0
        assert outcome.simulated.gas_used == outcome.receipt.gas_used
    assert w.balance(w.d.weth, w.executor) == 5 * WEI


async def test_min_profit_and_deadline(world: World) -> None:
    w = world
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")
    hops = (w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH"))
    probe = await simulate_and_execute(w, ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=True))
    profit = probe.simulated.profit
    assert profit > 0 and probe.real_change == profit
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")  # reopen a gap for the next attempts
    block = int(w.sync.call("eth_blockNumber", []), 16)
    expired = ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=True, deadline_block=block)
    outcome = await simulate_and_execute(w, expired)
    assert outcome.simulated.revert_reason == "expired" and outcome.receipt.status == 0
    greedy = ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=True, min_profit=10 * WEI)
    outcome = await simulate_and_execute(w, greedy)
    assert outcome.simulated.revert_reason == "no profit" and outcome.receipt.status == 0


async def test_coinbase_share_is_paid_in_native(world: World) -> None:
    w = world
    builder = "0x" + keccak(text="builder").hex()[-40:]
    w.sync.call("anvil_setCoinbase", [builder])
    w.sync.call("evm_mine", [])
    w.trigger_v2("uniswap-v2", 50 * WEI, "USDC")
    hops = (w.v2_hop("sushi-v2", "WETH", "USDC"), w.v2_hop("uniswap-v2", "USDC", "WETH"))
    args = ExecuteArgs(w.d.weth, 5 * WEI, hops, flash=True, coinbase_bps=2_500)
    outcome = await simulate_and_execute(w, args)
    sim = outcome.simulated
    assert sim.success and outcome.receipt.status == 1
    paid = sim.profit * 2_500 // 10_000
    assert paid > 0 and sim.coinbase_paid == paid
    assert sim.balance_change == sim.profit - paid == outcome.real_change
    moves = sim.simulation.native_transfers()
    assert (w.executor, sim.simulation.context.fee_recipient, paid) in moves
    assert sim.simulation.context.fee_recipient.lower() == builder
    assert sim.balance_change == outcome.real_change
    # The builder got the share plus the priority fees of the block.
    block = outcome.receipt.block_number
    got = int(w.sync.call("eth_getBalance", [builder, hex(block)]), 16) - int(
        w.sync.call("eth_getBalance", [builder, hex(block - 1)]), 16
    )
    base_fee = sim.simulation.context.base_fee
    tip = outcome.receipt.effective_gas_price - base_fee
    assert got == paid + tip * outcome.receipt.gas_used
    # The share needs the wrapped native as start token.
    w.trigger_v2("uniswap-v2", 30 * WEI, "USDT")
    usdt_hops = (w.v2_hop("uniswap-v2", "USDT", "WETH"), w.v2_hop("sushi-v2", "WETH", "USDT"))
    w.fund_executor("USDT", 10**9)
    bad = ExecuteArgs(w.token("USDT"), 10**9, usdt_hops, coinbase_bps=100)
    outcome = await simulate_and_execute(w, bad)
    assert outcome.receipt.status == 0
    assert outcome.simulated.revert_reason == "coinbase share needs the wrapped native token"


async def test_leaked_operator_key_cannot_drain_inventory_through_a_fake_pool(world: World) -> None:
    w = world
    usdc = w.token("USDC")
    w.fund_executor("USDC", 5_000 * 10**6)
    w.fund_executor_weth(WEI)
    out = vyper.compile_code(DRAINING_POOL, output_formats=["bytecode"])
    code = bytes.fromhex(out["bytecode"][2:]) + (5_000 * 10**6).to_bytes(32, "big")
    receipt = await _send(w, w.attacker, None, code)
    fake = receipt.contract_address
    assert fake is not None
    hops = (
        Hop(fake, "uniswap_v3", w.d.weth, usdc, True, 3000),
        Hop(fake, "uniswap_v3", usdc, w.d.weth, False, 3000),
    )
    args = ExecuteArgs(w.d.weth, 1, hops)
    outcome = await simulate_and_execute(w, args)
    assert outcome.simulated.revert_reason == "inventory spent"
    assert outcome.receipt.status == 0
    assert w.balance(usdc, w.executor) == 5_000 * 10**6
    assert w.balance(usdc, fake) == 0
