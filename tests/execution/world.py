"""Test helpers for the executor: accounts, pool hops and trigger swaps on the devnet chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.execution.deploy import Receipt, suggest_fees, transact
from mevstack.execution.encode import ExecuteArgs, Hop, encode_balance_of
from mevstack.execution.simulate import (
    ExecutionSimulation,
    build_execute_tx,
    call_execute,
    next_block_context,
    simulate_execute,
)

# Anvil's well-known development account #1: the operator in these tests.
OPERATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ATTACKER_KEY = "0x" + keccak(text="mevstack test attacker").hex()
DEADLINE = 2**40
EXECUTE_GAS = 1_500_000


@dataclass
class World:
    node: Anvil
    d: ChainDeployment
    rpc: RpcClient
    sync: DevnetRpc
    operator: LocalAccount
    attacker: LocalAccount
    owner: str
    executor: str

    def token(self, symbol: str) -> str:
        return self.d.token(symbol).address

    def v2_hop(self, dex: str, token_in: str, token_out: str) -> Hop:
        pool = self.d.pool(dex, token_in, token_out)
        t_in, t_out = self.token(token_in), self.token(token_out)
        fee = next(v.fee_bps for v in self.d.v2 if v.name == dex)
        return Hop(pool.address, "uniswap_v2", t_in, t_out, t_in == pool.token0, fee)

    def v3_hop(self, fee: int, token_in: str, token_out: str) -> Hop:
        pool = self.d.pool("uniswap-v3", token_in, token_out, fee)
        t_in, t_out = self.token(token_in), self.token(token_out)
        return Hop(pool.address, "uniswap_v3", t_in, t_out, t_in == pool.token0, fee)

    def balance(self, token: str, holder: str, block: str = "latest") -> int:
        raw = self.sync.call(
            "eth_call", [{"to": token, "data": "0x" + encode_balance_of(holder).hex()}, block]
        )
        return int(raw, 16)

    def send_from_deployer(self, to: str | None, data: bytes, value: int = 0) -> dict[str, Any]:
        tx = self.sync.send(self.d.deployer, to, data, value=value)
        return self.sync.wait_receipts([tx])[0]

    def send_from_deployer_create(self, code: bytes) -> str:
        receipt = self.send_from_deployer(None, code)
        return str(receipt["contractAddress"])

    def fund_executor_weth(self, amount: int) -> None:
        self.send_from_deployer(self.d.weth, encode_call("deposit()"), value=amount)
        self.send_from_deployer(
            self.d.weth, encode_call("transfer(address,uint256)", self.executor, amount)
        )

    def fund_executor(self, symbol: str, amount: int) -> None:
        if symbol == "WETH":
            self.fund_executor_weth(amount)
            return
        self.send_from_deployer(
            self.token(symbol), encode_call("transfer(address,uint256)", self.executor, amount)
        )

    def trigger_v2(self, dex: str, eth_in: int, symbol_out: str) -> dict[str, Any]:
        """A user's swap of ETH for ``symbol_out`` through the dex's Router02 (moves its price)."""
        router = next(v.router for v in self.d.v2 if v.name == dex)
        data = encode_call(
            "swapExactETHForTokens(uint256,address[],address,uint256)",
            0,
            [self.d.weth, self.token(symbol_out)],
            self.d.deployer,
            DEADLINE,
        )
        return self.send_from_deployer(router, data, value=eth_in)

    def trigger_v3(self, fee: int, eth_in: int, symbol_out: str) -> dict[str, Any]:
        """A user's swap of ETH for ``symbol_out`` through the V3 SwapRouter."""
        data = encode_call(
            "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
            (self.d.weth, self.token(symbol_out), fee, self.d.deployer, DEADLINE, eth_in, 0, 0),
        )
        return self.send_from_deployer(self.d.v3.swap_router, data, value=eth_in)

    def v3_tick(self, pool: str) -> int:
        slot0 = self.sync.view(
            pool, "slot0()", ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
        )
        return int(slot0[1])


@dataclass(frozen=True)
class Outcome:
    simulated: ExecutionSimulation
    receipt: Receipt
    real_change: int  # executor's start-token balance change across the mined block


async def simulate_and_execute(w: World, args: ExecuteArgs, *, gas: int = EXECUTE_GAS) -> Outcome:
    """Simulate ``args`` in the next block's context, then send exactly that transaction."""
    max_fee, tip = await suggest_fees(w.rpc)
    context = await next_block_context(w.rpc, block_time=1)
    tx = build_execute_tx(
        executor=w.executor,
        operator=w.operator.address,
        args=args,
        gas_limit=gas,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
    )
    sim = await simulate_execute(w.rpc, tx, args, context=context)
    if sim.success:
        # The plain eth_call path (block overrides, no gas figure) agrees on the profit.
        assert await call_execute(w.rpc, tx, context=context) == sim.profit
    # Anvil stamps blocks mined within one second with the same time; pin the predicted one so
    # the real block has the context the simulation assumed (V2 pairs skip their price
    # accumulators when no time has passed, which changes gas).
    w.sync.call("evm_setNextBlockTimestamp", [context.timestamp])
    receipt = await transact(
        w.rpc, w.operator, to=tx.to, data=tx.data, gas=gas, fees=(max_fee, tip)
    )
    assert isinstance(receipt, Receipt)
    before = w.balance(args.start_token, w.executor, hex(receipt.block_number - 1))
    after = w.balance(args.start_token, w.executor, hex(receipt.block_number))
    return Outcome(sim, receipt, after - before)


def new_attacker() -> LocalAccount:
    account: LocalAccount = Account.from_key(ATTACKER_KEY)
    return account
