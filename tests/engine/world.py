"""Helpers for engine tests: a config for a devnet chain, an engine running on it with every
event it publishes collected, and a trader on the real routers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mevstack.bus import MemoryBus, Subscription
from mevstack.chain.rpc import RpcClient
from mevstack.config import Settings, parse_settings
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.deploy import PoolInfo as DevnetPool
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.engine.engine import Engine
from mevstack.events import Event
from mevstack.execution.deploy import deploy_executor
from mevstack.store import Store

MAX_UINT = 2**256 - 1
DEADLINE = 2**40
V2_SWAP = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
V3_SWAP = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"


def chain_entry(name: str, rpc_url: str, dep: ChainDeployment, **extra: Any) -> dict[str, Any]:
    """A ``[[chains]]`` table for a deployed devnet chain (all three DEXes)."""
    dexes: list[dict[str, Any]] = [
        {"name": d.name, "kind": "uniswap_v2", "factory": d.factory, "fee_bps": d.fee_bps}
        for d in dep.v2
    ]
    dexes.append({"name": dep.v3.name, "kind": "uniswap_v3", "factory": dep.v3.factory})
    return {
        "name": name,
        "chain_id": dep.chain_id,
        "rpc": [rpc_url],
        "block_time": 1.0,
        "base_tokens": [dep.weth, dep.token("USDC").address],
        "wrapped_native": dep.weth,
        "strategies": ["arbitrage"],
        **extra,
        "dexes": dexes,
    }


def engine_settings(
    tmp_path: Path, *chains: dict[str, Any], **sections: dict[str, Any]
) -> Settings:
    """Settings with the state and a SQLite database under ``tmp_path``; ``engine`` keys and
    other sections as given."""
    engine = {"state_dir": str(tmp_path), **sections.pop("engine", {})}
    return parse_settings(
        {
            "engine": engine,
            "database": {"url": f"sqlite:///{tmp_path}/mevstack.db"},
            "chains": list(chains),
            **sections,
        },
        source="test",
        environ={},
    )


async def _collect(sub: Subscription, into: list[Event]) -> None:
    async for event in sub:
        into.append(event)


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings,
    *,
    events: list[str] | None = None,
    maxsize: int = 100_000,
    **engine_options: Any,
) -> AsyncIterator[tuple[Engine, list[Event]]]:
    """An Engine on a memory bus and its SQLite store, started; yields it and the list its
    published events (of ``events``, or all) are appended to; stops and closes everything."""
    bus = MemoryBus()
    store = Store.open(settings.database.url)
    seen: list[Event] = []
    sub = await bus.subscribe("test", events=events, maxsize=maxsize)
    collector = asyncio.create_task(_collect(sub, seen))
    engine = Engine(settings, bus=bus, store=store, **engine_options)
    await engine.start()
    try:
        yield engine, seen
    finally:
        await engine.stop()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await bus.aclose()
        store.close()


def unreachable_entry(name: str, chain_id: int, port: int, weth: str) -> dict[str, Any]:
    return {
        "name": name,
        "chain_id": chain_id,
        "rpc": [f"http://127.0.0.1:{port}"],
        "block_time": 1.0,
        "wrapped_native": weth,
        "strategies": ["arbitrage"],
    }


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def write_config(
    path: Path,
    chains: list[dict[str, Any]],
    state_dir: Path,
    server: dict[str, Any] | None = None,
) -> Path:
    """A TOML config file with these chains, a SQLite store and state under ``state_dir``."""
    lines = [
        "[engine]",
        f"state_dir = {json.dumps(str(state_dir))}",
        "[database]",
        f"url = {json.dumps(f'sqlite:///{state_dir}/mevstack.db')}",
    ]
    if server:
        lines.append("[server]")
        lines += [f"{k} = {toml_value(v)}" for k, v in server.items()]
    for chain in chains:
        lines.append("[[chains]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in chain.items() if k != "dexes"]
        for dex in chain.get("dexes", []):
            lines.append("[[chains.dexes]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in dex.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Trader:
    """The devnet's unlocked account 0, swapping through the real periphery contracts."""

    def __init__(self, rpc: DevnetRpc, dep: ChainDeployment) -> None:
        self.rpc, self.dep, self.me = rpc, dep, dep.deployer
        self.pools = {p.address: p for p in dep.pools}
        spenders = [dep.v3.swap_router, *(d.router for d in dep.v2)]
        rpc.transact(self.me, dep.weth, encode_call("deposit()"), value=10_000 * 10**18)
        rpc.wait_receipts(
            [
                rpc.send(self.me, t.address, encode_call("approve(address,uint256)", s, MAX_UINT))
                for t in dep.tokens.values()
                for s in spenders
            ]
        )

    def balance(self, token: str) -> int:
        return int(self.rpc.view(token, "balanceOf(address)", ["uint256"], self.me))

    def swap(self, pool: DevnetPool, token_in: str, token_out: str, amount_in: int) -> int:
        """One exact-input swap through the pool's router; what the account received."""
        before = self.balance(token_out)
        router = next((d.router for d in self.dep.v2 if d.name == pool.dex), None)
        if router is not None:
            data = encode_call(V2_SWAP, amount_in, 0, [token_in, token_out], self.me, DEADLINE)
        else:  # the SwapRouter picks the V3 pool by (tokens, fee tier)
            router = self.dep.v3.swap_router
            params = (token_in, token_out, pool.fee, self.me, DEADLINE, amount_in, 0, 0)
            data = encode_call(V3_SWAP, params)
        self.rpc.wait_receipts([self.rpc.send(self.me, router, data, gas=3_000_000)])
        return self.balance(token_out) - before

    def execute(self, opportunity: dict[str, Any]) -> tuple[list[int], int]:
        """Each hop of a JSON Opportunity from its exact amount_in: (outputs, profit of token)."""
        token = opportunity["token"]
        before = self.balance(token)
        received = [
            self.swap(self.pools[h["pool"]], h["token_in"], h["token_out"], int(h["amount_in"]))
            for h in opportunity["path"]
        ]
        return received, self.balance(token) - before


@dataclass
class ExecutionWorld:
    """A devnet chain equipped to execute: an operator key in an encrypted keystore, funded
    for gas, our executor deployed (owned by the deployer) and a trader on the real routers."""

    node: Anvil
    dep: ChainDeployment
    rpc: DevnetRpc
    operator: LocalAccount
    executor: str
    keystore: Path
    password: str
    trader: Trader


async def equip_for_execution(
    node: Anvil, dep: ChainDeployment, rpc: DevnetRpc, key_dir: Path
) -> ExecutionWorld:
    """See :class:`ExecutionWorld`; the executor also holds 100 WETH of inventory, for paths
    that cannot borrow their input (a V3 first hop)."""
    operator: LocalAccount = Account.create()
    password = secrets.token_hex(16)
    keystore = key_dir / "key.json"
    encrypted = await asyncio.to_thread(Account.encrypt, operator.key, password)
    keystore.write_text(json.dumps(encrypted), encoding="utf-8")
    rpc.call("anvil_setBalance", [operator.address, hex(100 * 10**18)])
    async with RpcClient(node.rpc_url) as client:
        executor = await deploy_executor(
            client, operator, owner=dep.deployer, wrapped_native=dep.weth
        )
    trader = await asyncio.to_thread(Trader, rpc, dep)
    transfer = encode_call("transfer(address,uint256)", executor, 100 * 10**18)
    rpc.transact(dep.deployer, dep.weth, transfer)
    return ExecutionWorld(node, dep, rpc, operator, executor, keystore, password, trader)
