"""Opportunity to signed transaction on the wire: the execution pipeline's latency, p50/p99.

One round = :meth:`Pipeline.execute` of a planted two-hop WETH arbitrage on a local anvil with the
real Uniswap V2 contracts: risk gate, ``prepare_execute`` (two ``eth_simulateV1``), the final
simulation with ``min_profit`` set, the write-ahead trade row (SQLite, WAL), nonce reservation,
signing (coincurve) and ``eth_sendRawTransaction``, until the node accepted it.  Each round
starts from the same ``evm_snapshot`` (reverted outside the timing).  Baseline: one bare
``eth_sendRawTransaction`` of a pre-signed transfer on the same node.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account

from bench.result import Result
from mevstack.chain.rpc import RpcClient
from mevstack.config import parse_settings
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import deploy_chain
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.execution.deploy import deploy_executor
from mevstack.execution.encode import ExecuteArgs, Hop
from mevstack.execution.lease import LocalLease
from mevstack.execution.nonces import NonceManager
from mevstack.execution.pipeline import ChainContext, Pipeline, Plan
from mevstack.execution.risk import Candidate
from mevstack.execution.routes import PublicRoute, Signer, Submitter
from mevstack.execution.trading_state import TradingState
from mevstack.store import Store

ROUNDS = 60
WARMUP = 5
OPERATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
WEI = 10**18


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(node: Anvil, store: Store) -> tuple[list[float], list[float]]:
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
    swap = encode_call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        0,
        [d.weth, usdc],
        d.deployer,
        2**40,
    )
    settings = parse_settings(
        {
            "engine": {"mode": "live"},
            "chains": [
                {"name": "ethereum", "chain_id": 1, "rpc": [node.rpc_url], "wrapped_native": d.weth}
            ],
        },
        source="bench",
        environ={},
    )
    candidate = Candidate(
        "ethereum", d.weth, (d.weth, usdc), (sushi.address, uni.address), 5 * WEI, 10**10, 1
    )
    pipeline_times: list[float] = []
    bare_times: list[float] = []
    async with RpcClient(node.rpc_url) as rpc:
        executor = await deploy_executor(rpc, operator, owner=d.deployer, wrapped_native=d.weth)
        with DevnetRpc(node.rpc_url) as sync:
            sync.wait_receipts(
                [sync.send(d.deployer, d.v2[0].router, swap, value=50 * WEI, gas=400_000)]
            )
            state = TradingState.load(store, settings)
            chain = ChainContext("ethereum", 1, 12.0, d.weth, executor, "public")
            lease = LocalLease()
            signer = Signer(operator, state.gate, lease)
            for i in range(WARMUP + ROUNDS):
                snapshot = sync.call("evm_snapshot", [])
                nonces = NonceManager("ethereum", operator.address, [rpc])
                await nonces.sync()
                submitter = Submitter(PublicRoute([rpc]), nonces, signer, lease)
                pipeline = Pipeline(
                    chain=chain,
                    rpc=rpc,
                    store=store,
                    state=state,
                    submitter=submitter,
                    lease=lease,
                    operator=operator.address,
                )
                plan = Plan(f"bench-{i}", args, expires_at_block=10**9, priority_fee=10**9)
                start = time.perf_counter()
                outcome = await pipeline.execute(plan, candidate=candidate)
                elapsed = (time.perf_counter() - start) * 1000
                if outcome.trade is None or outcome.trade.status != "submitted":
                    raise RuntimeError(f"benchmark trade was not sent: {outcome.refused}")
                state.set_in_flight("ethereum", 0)
                raw = operator.sign_transaction(
                    {
                        "type": 2,
                        "chainId": 1,
                        "nonce": outcome.signed.nonce + 1 if outcome.signed else 0,
                        "to": d.deployer,
                        "value": 1,
                        "gas": 21_000,
                        "maxFeePerGas": 10**11,
                        "maxPriorityFeePerGas": 10**9,
                    }
                ).raw_transaction
                start = time.perf_counter()
                await rpc.request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
                bare = (time.perf_counter() - start) * 1000
                sync.call("evm_revert", [snapshot])
                if i >= WARMUP:
                    pipeline_times.append(elapsed)
                    bare_times.append(bare)
    return pipeline_times, bare_times


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp, Anvil(chain_id=1, balance_eth=1_000_000) as node:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            samples, bare = asyncio.run(_measure(node, store))
        finally:
            store.close()
    results = []
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        value = _percentile(samples, q)
        results.append(
            Result(
                name=f"opportunity to signed tx on the wire (gate + simulation) {label}",
                value=value,
                unit="ms",
                baseline=_percentile(bare, q),
                target="p50 <= 15 ms" if label == "p50" else "",
                met=(value <= 15.0) if label == "p50" else None,
                note=f"{ROUNDS} rounds; baseline: bare eth_sendRawTransaction {label}; "
                f"mean {statistics.fmean(samples):.3f} ms",
            )
        )
    return results
