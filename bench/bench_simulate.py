"""Simulating a two-hop executor path: p50/p99 per method against a bare eth_call of the same tx.

Methods: ``eth_call`` with next-block overrides (profit only), ``eth_simulateV1`` with balance
reads (exact gas and balance change: what the pipeline uses), and ``eth_simulateV1`` of
``[trigger, backrun]``.  Baseline: the same transaction through a plain ``eth_call``.  One local
anvil with the real Uniswap contracts; every figure is a wall-clock round trip from Python.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from eth_account import Account

from bench.result import Result
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import deploy_chain
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.execution.deploy import deploy_executor, suggest_fees
from mevstack.execution.encode import ExecuteArgs, Hop
from mevstack.execution.simulate import (
    TxRequest,
    build_execute_tx,
    call_execute,
    next_block_context,
    simulate_execute,
)

ROUNDS = 200
WARMUP = 20
OPERATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
WEI = 10**18


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _time(fn: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(WARMUP):
        await fn()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _measure(node: Anvil) -> dict[str, list[float]]:
    d = deploy_chain(node.rpc_url)
    operator = Account.from_key(OPERATOR_KEY)
    usdc = d.token("USDC").address
    sushi = d.pool("sushi-v2", "WETH", "USDC")
    uni = d.pool("uniswap-v2", "WETH", "USDC")
    hops = (
        Hop(sushi.address, "uniswap_v2", d.weth, usdc, d.weth == sushi.token0, 30),
        Hop(uni.address, "uniswap_v2", usdc, d.weth, usdc == uni.token0, 30),
    )
    args = ExecuteArgs(d.weth, 5 * WEI, hops, flash=True)
    router = d.v2[0].router
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        0,
        [d.weth, usdc],
        d.deployer,
        2**40,
    )
    async with RpcClient(node.rpc_url) as rpc:
        executor = await deploy_executor(rpc, operator, owner=d.deployer, wrapped_native=d.weth)
        max_fee, tip = await suggest_fees(rpc)
        trigger = TxRequest(d.deployer, router, swap, 300_000, max_fee + tip, 2 * tip, 50 * WEI)
        tx = build_execute_tx(
            executor=executor,
            operator=operator.address,
            args=args,
            gas_limit=1_000_000,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
        )
        # Open the price gap for the single-transaction methods (the backrun brings its own).
        with DevnetRpc(node.rpc_url) as sync:
            sync.wait_receipts([sync.send(d.deployer, router, swap, value=50 * WEI)])
        context = await next_block_context(rpc, block_time=12)
        check = await simulate_execute(rpc, tx, args, context=context)
        if not check.success or check.profit != await call_execute(rpc, tx, context=context):
            raise RuntimeError(f"benchmark path does not simulate cleanly: {check.revert_reason}")

        async def bare() -> object:
            return await rpc.request("eth_call", [tx.as_call(), "latest"])

        async def with_overrides() -> object:
            return await call_execute(rpc, tx, context=context)

        async def simulate_v1() -> object:
            return await simulate_execute(rpc, tx, args, context=context)

        async def backrun() -> object:
            return await simulate_execute(rpc, tx, args, context=context, before=[trigger])

        return {
            "bare": await _time(bare),
            "eth_call + block overrides": await _time(with_overrides),
            "eth_simulateV1 (gas + balances)": await _time(simulate_v1),
            "eth_simulateV1 [trigger, backrun]": await _time(backrun),
        }


def run() -> list[Result]:
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        samples = asyncio.run(_measure(node))
    bare = samples.pop("bare")
    results: list[Result] = []
    for name, values in samples.items():
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            results.append(
                Result(
                    name=f"simulate two-hop path: {name} {label}",
                    value=_percentile(values, q),
                    unit="ms",
                    baseline=_percentile(bare, q),
                    note=f"{ROUNDS} rounds; baseline: bare eth_call {label}; "
                    f"mean {statistics.fmean(values):.3f} ms",
                )
            )
    return results
