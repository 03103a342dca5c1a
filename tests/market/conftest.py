"""Fixtures of the market tests: the seeded devnet with extra V3 positions, and chain helpers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

import httpx
import pytest
from eth_utils.address import to_checksum_address

from mevstack.chain.rpc import RpcClient
from mevstack.devnet import catalog
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.market.base import DexSpec, PoolInfo
from mevstack.market.pools import KINDS, V3PoolState
from mevstack.market.state import load_pools

T = TypeVar("T")
MAX_UINT = 2**256 - 1
DEADLINE = 2**40
MINT_SIG = (
    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
)
SWAP_PARAMS = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
INCREASE_LIQUIDITY = "0x3067048beee31b25b2f1681f88dac838c8bba36af25bfb2b7cf7473a5847e35f"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine from a synchronous (hypothesis) test on a fresh loop."""
    return asyncio.run(coro)


def raw_batch(url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """A JSON-RPC batch keeping per-item errors: each item is the result or ``{"error": ...}``."""
    payload = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
    ]
    answers = httpx.post(url, json=payload, timeout=120).json()
    by_id = {a["id"]: a for a in answers}
    return [
        {"error": by_id[i]["error"]} if "error" in by_id[i] else by_id[i]["result"]
        for i in range(len(calls))
    ]


def dex_specs(dep: ChainDeployment) -> list[DexSpec]:
    specs = [DexSpec(d.name, "uniswap_v2", d.factory, d.fee_bps, d.init_code_hash) for d in dep.v2]
    specs.append(DexSpec(dep.v3.name, "uniswap_v3", dep.v3.factory, 0, dep.v3.init_code_hash))
    return specs


def pool_infos(dep: ChainDeployment) -> list[PoolInfo]:
    return [
        PoolInfo(
            p.dex,
            p.kind,
            p.address,
            p.token0,
            p.token1,
            p.fee_bps if p.kind == "uniswap_v2" else p.fee,
            p.tick_spacing,
            0,
        )
        for p in dep.pools
    ]


async def fresh_states(url: str, infos: Sequence[PoolInfo], block: int) -> dict[str, Any]:
    client = RpcClient(url, timeout=120)
    try:
        loaded = await load_pools(client, KINDS, infos, block)
    finally:
        await client.aclose()
    return {info.address.lower(): state for info, state in loaded}


@dataclass
class Trader:
    """Account 0 of the devnet with every periphery approved, sending real transactions."""

    node: Anvil
    dep: ChainDeployment
    rpc: DevnetRpc
    extra: list[PoolInfo] = field(default_factory=list)  # pools the fixture created itself

    def infos(self) -> list[PoolInfo]:
        return [*pool_infos(self.dep), *self.extra]

    @property
    def me(self) -> str:
        return self.dep.deployer

    def transact(self, to: str, data: bytes) -> dict[str, Any]:
        """Send with a fixed gas limit: estimates fall short for calls that use callbacks."""
        tx = {"from": self.me, "to": to, "data": "0x" + data.hex(), "gas": hex(10_000_000)}
        answer = raw_batch(self.rpc.url, [("eth_call", [tx, "latest"])])[0]
        if isinstance(answer, dict):
            raise AssertionError(f"transaction to {to} would revert: {answer['error']}")
        return self.rpc.wait_receipts([self.rpc.send(self.me, to, data, gas=10_000_000)])[0]

    def symbol(self, address: str) -> str:
        return next(t.symbol for t in self.dep.tokens.values() if t.address == address)

    def mint_v3(
        self, pool: PoolInfo, tick_lower: int, tick_upper: int, usd: int
    ) -> tuple[int, dict[str, Any]]:
        """Mint a position through the position manager; returns (token id, receipt)."""
        params = (
            pool.token0,
            pool.token1,
            pool.fee,
            tick_lower,
            tick_upper,
            catalog.token_amount(self.symbol(pool.token0), Fraction(usd)),
            catalog.token_amount(self.symbol(pool.token1), Fraction(usd)),
            0,
            0,
            self.me,
            DEADLINE,
        )
        receipt = self.transact(self.dep.v3.position_manager, encode_call(MINT_SIG, params))
        token_id = next(
            int(lg["topics"][1], 16)
            for lg in receipt["logs"]
            if lg["topics"][0] == INCREASE_LIQUIDITY
        )
        return token_id, receipt

    def position_liquidity(self, token_id: int) -> int:
        values = self.rpc.view(
            self.dep.v3.position_manager,
            "positions(uint256)",
            [
                "uint96",
                "address",
                "address",
                "address",
                "uint24",
                "int24",
                "int24",
                "uint128",
                "uint256",
                "uint256",
                "uint128",
                "uint128",
            ],
            token_id,
        )
        return int(values[7])

    def burn_v3(self, token_id: int, liquidity: int) -> dict[str, Any]:
        sig = "decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))"
        return self.transact(
            self.dep.v3.position_manager,
            encode_call(sig, (token_id, liquidity, 0, 0, DEADLINE)),
        )

    def swap_v3(
        self,
        pool: PoolInfo,
        zero_for_one: bool,
        amount: int,
        exact_in: bool = True,
        limit: int = 0,
    ) -> dict[str, Any]:
        t_in, t_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
        if exact_in:
            sig = (
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
            )
            params = (t_in, t_out, pool.fee, self.me, DEADLINE, amount, 0, limit)
        else:
            sig = f"exactOutputSingle({SWAP_PARAMS})"
            params = (t_in, t_out, pool.fee, self.me, DEADLINE, amount, MAX_UINT, limit)
        return self.transact(self.dep.v3.swap_router, encode_call(sig, params))

    def swap_v2(self, pool: PoolInfo, zero_for_one: bool, amount_in: int) -> dict[str, Any]:
        router = next(d.router for d in self.dep.v2 if d.name == pool.dex)
        path = [pool.token0, pool.token1] if zero_for_one else [pool.token1, pool.token0]
        sig = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
        return self.transact(router, encode_call(sig, amount_in, 0, path, self.me, DEADLINE))


def _approve_everything(rpc: DevnetRpc, dep: ChainDeployment) -> None:
    me = dep.deployer
    spenders = [dep.v3.position_manager, dep.v3.swap_router, *(d.router for d in dep.v2)]
    rpc.transact(me, dep.weth, encode_call("deposit()"), value=200_000 * 10**18)
    hashes = [
        rpc.send(me, token.address, encode_call("approve(address,uint256)", spender, MAX_UINT))
        for token in dep.tokens.values()
        for spender in spenders
    ]
    rpc.wait_receipts(hashes)


def _tick_spacing_one_pool(trader: Trader) -> PoolInfo:
    """Enable the 0.01 % tier (tick spacing 1) on the factory and open a USDC/DAI pool on it.

    The shipped factory enables 500/3000/10000 only; spacing 1 has the widest bitmap
    (6,932 words) and the most word-boundary steps, so it is the tier most worth testing.
    """
    dep, rpc = trader.dep, trader.rpc
    factory = dep.v3.factory
    trader.transact(factory, encode_call("enableFeeAmount(uint24,int24)", 100, 1))
    stable = dep.pool(dep.v3.name, "USDC", "DAI", 500)
    price = rpc.view(stable.address, "slot0()", ["uint160", "int24"])[0]
    trader.transact(
        dep.v3.position_manager,
        encode_call(
            "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
            stable.token0,
            stable.token1,
            100,
            price,
        ),
    )
    address = rpc.view(
        factory, "getPool(address,address,uint24)", ["address"], stable.token0, stable.token1, 100
    )
    return PoolInfo(
        dep.v3.name,
        "uniswap_v3",
        to_checksum_address(address),
        stable.token0,
        stable.token1,
        100,
        1,
        0,
    )


@pytest.fixture(scope="module")
def market(devnet_chain: tuple[Anvil, ChainDeployment]) -> Iterator[Trader]:
    """The devnet with extra narrow V3 positions so swaps cross many initialised ticks.

    Module-scoped: one snapshot before the extra positions, reverted after the module.
    """
    node, dep = devnet_chain
    with DevnetRpc(node.rpc_url, timeout=120) as rpc:
        snapshot = rpc.call("evm_snapshot")
        try:
            trader = Trader(node, dep, rpc)
            _approve_everything(rpc, dep)
            rng = random.Random(4)
            trader.extra.append(_tick_spacing_one_pool(trader))
            v3_infos = [i for i in trader.infos() if i.kind == "uniswap_v3"]
            block = int(rpc.call("eth_blockNumber"), 16)
            states = run(fresh_states(node.rpc_url, v3_infos, block))
            for info in v3_infos:
                state = states[info.address.lower()]
                assert isinstance(state, V3PoolState)
                spacing = state.tick_spacing
                for _ in range(10):
                    lower = (state.tick // spacing + rng.randint(-60, 20)) * spacing
                    upper = lower + spacing * rng.randint(1, 50)
                    trader.mint_v3(info, lower, upper, rng.choice([20_000, 100_000, 400_000]))
            yield trader
        finally:
            rpc.call("evm_revert", [snapshot])
