"""Two engine processes (primary and --standby) and a gateway process on real Redis and
PostgreSQL against one devnet chain: trades go through the gateway, the primary is SIGKILLed,
the standby takes reads and the lease, and the store holds each trade exactly once."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from mevstack.api.auth import hash_token
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc
from mevstack.store import Store
from tests.databases import throwaway_postgres
from tests.engine.world import ExecutionWorld as World
from tests.engine.world import chain_entry, equip_for_execution, toml_value
from tests.gateway.conftest import recv_json
from tests.gateway.test_ws import send

pytestmark = pytest.mark.slow

WEI = 10**18
MEVSTACK = [sys.executable, "-m", "mevstack.cli"]
# A Redis database of its own: the processes use the default bus namespace and lease name.
REDIS_URL = "redis://127.0.0.1:6379/12"
PASSWORD_ENV = "MEVSTACK_REPLICAS_TEST_KEY_PASSWORD"
TRADER_TOKEN = "mvt_" + secrets.token_hex(24)
T = TypeVar("T")


@pytest.fixture(scope="module")
async def world(
    devnet_chain: tuple[Anvil, ChainDeployment], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    node, dep = devnet_chain
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        snapshot = rpc.call("evm_snapshot", [])
        try:
            yield await equip_for_execution(node, dep, rpc, tmp_path_factory.mktemp("keys"))
        finally:
            assert rpc.call("evm_revert", [snapshot]) is True


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def write_config(tmp_path: Path, w: World, db_url: str, ports: dict[str, int]) -> Path:
    backends = [f"http://127.0.0.1:{ports['primary']}", f"http://127.0.0.1:{ports['standby']}"]
    doc: dict[str, Any] = {
        "engine": {"state_dir": str(tmp_path / "state"), "mode": "live", "auto_execute": False},
        "database": {"url": db_url},
        "bus": {"url": REDIS_URL},
        "server": {
            "engine_port": ports["primary"],
            "standby_port": ports["standby"],
            "gateway_port": ports["gateway"],
            "ws_port": ports["ws"],
            "backends": backends,
            "public_read": False,
        },
        "auth": {
            "tokens": [
                {"name": "trader", "scopes": ["read", "trade"], "sha256": hash_token(TRADER_TOKEN)}
            ]
        },
        "execution": {"keystore": str(w.keystore), "password_env": PASSWORD_ENV},
        "chains": [
            chain_entry("ethereum", w.node.rpc_url, w.dep, executor=w.executor, confirmations=1)
        ],
    }
    path = tmp_path / "mevstack.toml"
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in doc.items()))
    return path


async def poll(
    probe: Callable[[], Awaitable[T | None]], within: float, what: str, step: float = 0.05
) -> T:
    """The first non-None answer of ``probe`` before the deadline."""
    try:
        async with asyncio.timeout(within):
            while True:
                got = await probe()
                if got is not None:
                    return got
                await asyncio.sleep(step)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


def plant(w: World) -> tuple[int, set[str]]:
    """A large WETH→USDC buy on uniswap-v2 leaves USDC cheap there versus sushi-v2."""
    uni = w.dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = w.dep.pool("sushi-v2", "WETH", "USDC")
    w.trader.swap(uni, w.dep.weth, w.dep.token("USDC").address, 200 * WEI)
    return int(w.rpc.call("eth_blockNumber"), 16), {uni.address.lower(), sushi.address.lower()}


async def planted_opportunity(client: httpx.AsyncClient, w: World) -> str:
    """The id of the gap just planted, as listed through the gateway (ids are stable per path,
    so a later sighting of the same path is told apart by its block)."""
    at, pools = await asyncio.to_thread(plant, w)

    async def find() -> str | None:
        answer = await client.get("/api/mev/opportunities", params={"limit": 100})
        if answer.status_code != 200:
            return None
        for o in answer.json()["data"]:
            if (
                {h["pool"].lower() for h in o["path"]} == pools
                and o["token"].lower() == w.dep.weth.lower()
                and o["block_number"] >= at
            ):
                return str(o["id"])
        return None

    return await poll(find, 30, "the planted opportunity through the gateway")


async def start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            *MEVSTACK, *args, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def test_trades_survive_the_primary_engine_being_killed(
    world: World, pg_url: str, tmp_path: Path
) -> None:
    w = world
    ports = {k: free_port() for k in ("primary", "standby", "gateway", "ws")}
    config = str(write_config(tmp_path, w, pg_url, ports))
    env = {**os.environ, PASSWORD_ENV: w.password}
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    Store.open(pg_url).close()  # migrated once, before two processes race to do it
    procs: dict[str, asyncio.subprocess.Process] = {}
    store = Store.open(pg_url)
    try:
        common = ["--config", config, "--log-level", "warning"]
        procs["primary"] = await start(["engine", *common], env, tmp_path / "primary.log")
        gw = f"http://127.0.0.1:{ports['gateway']}"
        headers = {"Authorization": f"Bearer {TRADER_TOKEN}"}
        async with httpx.AsyncClient(base_url=gw, headers=headers, timeout=10) as client:

            async def engine_up(port: int) -> bool | None:
                for name, proc in procs.items():
                    assert proc.returncode is None, (
                        f"{name} exited: " + (tmp_path / f"{name}.log").read_text()
                    )
                try:
                    r = await client.get(f"http://127.0.0.1:{port}/health")
                except httpx.TransportError:
                    return None
                return True if r.status_code == 200 and r.json().get("lease") is True else None

            # the primary takes the lease before the standby starts, so roles are known
            await poll(lambda: engine_up(ports["primary"]), 45, "the primary to hold the lease")
            procs["standby"] = await start(
                ["engine", "--standby", *common], env, tmp_path / "standby.log"
            )
            procs["gateway"] = await start(["gateway", *common], env, tmp_path / "gateway.log")

            async def gateway_sees_both() -> dict[str, Any] | None:
                try:
                    r = await client.get("/health")
                except httpx.TransportError:
                    return None
                body: dict[str, Any] = r.json()
                backends = body.get("backends", [])
                healthy = [b for b in backends if b.get("healthy")]
                return body if len(healthy) == 2 else None

            health = await poll(gateway_sees_both, 45, "the gateway to see both engines")
            holders = [b["url"] for b in health["backends"] if b["holds_lease"]]
            assert holders == [f"http://127.0.0.1:{ports['primary']}"], health

            async with connect(f"ws://127.0.0.1:{ports['ws']}") as ws:
                await send(ws, {"type": "auth", "token": TRADER_TOKEN})
                assert (await recv_json(ws))["type"] == "authenticated"
                await send(ws, {"type": "subscribe", "events": ["trade.included"]})
                assert (await recv_json(ws))["type"] == "subscribed"

                first_opp = await planted_opportunity(client, w)
                executed = await client.post(
                    f"/api/mev/opportunities/{first_opp}/execute",
                    headers={"Idempotency-Key": "first"},
                )
                assert executed.status_code == 202, executed.text
                first = executed.json()["data"]
                assert first["status"] == "submitted"

                async def included_frame() -> dict[str, Any] | None:
                    frame = await recv_json(ws, within=30)
                    if frame.get("event") == "trade.included":
                        return frame
                    return None

                frame = await poll(included_frame, 30, "trade.included on the gateway's WS")
                assert frame["data"]["id"] == first["id"], frame
                assert isinstance(frame["seq"], int)

            async def included(trade_id: str) -> bool | None:
                row = await asyncio.to_thread(store.get_trade, trade_id)
                return True if row is not None and row.status == "included" else None

            await poll(lambda: included(first["id"]), 30, "the first trade to be included")

            procs["primary"].send_signal(signal.SIGKILL)
            await procs["primary"].wait()
            standby_url = f"http://127.0.0.1:{ports['standby']}"

            async def standby_serves() -> bool | None:
                r = await client.get("/health")
                body = r.json()
                holders = [b["url"] for b in body["backends"] if b["holds_lease"]]
                if holders != [standby_url]:
                    return None
                reads = await client.get("/api/trades")
                meta = reads.json()["meta"] if reads.status_code == 200 else {}
                fresh = not meta.get("stale") and reads.headers.get("x-cache") == "miss"
                served = fresh and str(meta.get("source", "")).endswith(f":{ports['standby']}")
                return True if served else None

            killed = time.monotonic()
            await poll(standby_serves, 20, "the standby to serve reads and hold the lease")
            # the lease TTL (3 s) bounds the takeover; the gateway's health checks add little
            assert time.monotonic() - killed < 10

            second_opp = await planted_opportunity(client, w)
            executed = await client.post(
                f"/api/mev/opportunities/{second_opp}/execute",
                headers={"Idempotency-Key": "second"},
            )
            assert executed.status_code == 202, executed.text
            second = executed.json()["data"]
            assert second["id"] != first["id"]
            await poll(lambda: included(second["id"]), 30, "the second trade to be included")

        page = store.list_trades(limit=100)
        trades = {t.id: t for t in page.items}
        assert set(trades) == {first["id"], second["id"]}, trades
        a, b = trades[first["id"]], trades[second["id"]]
        assert a.status == b.status == "included"
        assert len(a.tx_hashes) == len(b.tx_hashes) == 1
        assert a.tx_hashes[0] != b.tx_hashes[0]
        nonces = [
            int(w.rpc.call("eth_getTransactionByHash", [t.tx_hashes[0]])["nonce"], 16)
            for t in (a, b)
        ]
        assert nonces[1] == nonces[0] + 1
        assert b.fencing_epoch > a.fencing_epoch > 0
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        store.close()
        await redis.flushdb()
        await redis.aclose()
