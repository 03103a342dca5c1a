"""Engine benchmark: block-to-opportunity latency on a devnet chain at one block per second.

One anvil (chain id 1) with the devnet deployment plus ``EXTRA_PAIRS`` more V2 pairs created
through the real Router02 of both V2 DEXes over ``EXTRA_TOKENS`` fresh ERC-20s (prices
consistent, so they add indexed cycles and state to follow but no planted opportunity),
interval mining every second and noise traders swapping through the real routers of the
original pools several times per block.  The engine runs in this
process (memory bus, SQLite store) and follows the chain over its WebSocket.  An independent
observer subscribes to the node's ``newHeads`` and stamps when each head reaches a client; the
latency of a block is from that stamp to the first ``mev.opportunity`` event carrying that block
number (blocks whose trades changed no opportunity publish none and are not counted).  Also
reported: the arbitrage scan's own wall time per block (incremental and full), which is what
would have to move to a worker process if it blocked the event loop for long.

The second measurement is the same latency under the full demo load: ``demo_world`` starts what
``mevstack demo`` starts (five chains at their scaled block times, each with its noise traders,
executors deployed, live mode with auto-execution) and ``running_stack`` runs the engine,
gateway, WebSocket and dashboard in this process as ``mevstack up`` does.  One ``newHeads``
observer per chain stamps heads; per chain, a block's latency is from that stamp to the first
``mev.opportunity`` of that chain carrying its number.  Blocks are counted over a
``DEMO_WINDOW_S`` window that opens once every chain's market is built.

The third is the mempool side: from a victim swap's ``eth_sendRawTransaction`` to its backrun's
``mev.opportunity``, with the mempool read by polling ``txpool_content`` (the baseline, no
``ws``) and pushed by a ``newPendingTransactions`` subscription (``run_backrun_latency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import websockets
from tests.ports import free_port_block
from tests.waiting import wait_until

from bench.result import Result
from mevstack.bus import MemoryBus
from mevstack.config import parse_settings
from mevstack.devnet import artifacts
from mevstack.devnet.activity import NoiseTraders
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.demo import DemoOptions, DemoWorld, demo_world
from mevstack.devnet.deploy import DEADLINE, MAX_UINT256, ChainDeployment, deploy_chain
from mevstack.devnet.network import CHAIN_SPECS
from mevstack.devnet.rpc import DevnetRpc, create_address, encode_args, encode_call
from mevstack.engine.chain_runtime import percentile
from mevstack.engine.engine import Engine, running_stack
from mevstack.errors import DevnetError
from mevstack.events import EventName
from mevstack.store import Store

BLOCKS = 40
TRADE_INTERVAL_S = 0.3
EXTRA_PAIRS = 2_000
EXTRA_TOKENS = 150
_SEND_BATCH = 250  # eth_sendTransaction calls per JSON-RPC batch request
DEMO_WINDOW_S = 75.0  # heads stamped in this window are counted (ethereum: 3 s blocks)
DEMO_SETTLE_S = 5.0  # after the last market build, before the window opens
_DEMO_TAIL_S = 2.0  # heads this close to the window's end may still be in flight
_TRADE_EVENTS = (EventName.TRADE_SUBMITTED, EventName.TRADE_INCLUDED, EventName.TRADE_FAILED)


def _deploy_extra_pairs(rpc_url: str, dep: ChainDeployment) -> int:
    """Create ``EXTRA_PAIRS`` funded V2 pairs over ``EXTRA_TOKENS`` new tokens; returns the count.

    Every transaction is sent with an explicit nonce and gas limit in batched requests (the
    addresses follow from the nonces), each batch's receipts checked before the next, as
    ``deploy_chain`` does.  Each token is paired with WETH on both V2 DEXes; the remaining pairs
    join random token pairs on a random DEX, all at one consistent price per token.
    """
    rng = random.Random(17)
    with DevnetRpc(rpc_url, timeout=120.0) as rpc:
        deployer = dep.deployer
        nonce = int(rpc.call("eth_getTransactionCount", [deployer, "pending"]), 16)
        txs: list[dict[str, str]] = []

        def send(to: str | None, data: bytes, gas: int, value: int = 0) -> None:
            nonlocal nonce
            tx = {"from": deployer, "data": "0x" + data.hex(), "gas": hex(gas),
                  "nonce": hex(nonce), "value": hex(value)}  # fmt: skip
            if to is not None:
                tx["to"] = to
            txs.append(tx)
            nonce += 1

        code = artifacts.compile_vyper("erc20").bytecode
        tokens: list[str] = []
        for i in range(EXTRA_TOKENS):
            tokens.append(create_address(deployer, nonce))
            ctor = encode_args(
                ["string", "string", "uint8", "uint256"], f"Bench {i}", f"B{i}", 18, 10**40
            )
            send(None, code + ctor, 3_000_000)
        routers = [d.router for d in dep.v2]
        for token in tokens:
            for router in routers:
                send(token, encode_call("approve(address,uint256)", router, MAX_UINT256), 100_000)
        price = {t: 10 ** rng.uniform(-3, 1) for t in tokens}  # WETH per token
        price[dep.weth] = 1.0
        wanted: list[tuple[str, str, str]] = [(r, dep.weth, t) for t in tokens for r in routers]
        seen = {(r, *sorted((a, b))) for r, a, b in wanted}
        while len(wanted) < EXTRA_PAIRS:
            a, b = rng.sample(tokens, 2)
            router = rng.choice(routers)
            key = (router, *sorted((a, b)))
            if key not in seen:
                seen.add(key)
                wanted.append((router, a, b))
        weth_needed = 0
        adds = []
        for _, a, b in wanted:
            value = 10 ** rng.uniform(0, 2.5) * 10**18  # pool depth in WETH per side
            amount_a, amount_b = int(value / price[a]), int(value / price[b])
            if a == dep.weth:
                weth_needed += amount_a
            sig = "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)"
            args = (a, b, amount_a, amount_b, amount_a, amount_b, deployer, DEADLINE)
            adds.append(encode_call(sig, *args))
        send(dep.weth, encode_call("deposit()"), 100_000, value=weth_needed)
        for (router, _, _), data in zip(wanted, adds, strict=True):
            send(router, data, 4_000_000)
        for start in range(0, len(txs), _SEND_BATCH):
            chunk = txs[start : start + _SEND_BATCH]
            hashes = rpc.batch([("eth_sendTransaction", [tx]) for tx in chunk])
            _mine_out(rpc, hashes)
    return len(wanted)


def _mine_out(rpc: DevnetRpc, hashes: list[str]) -> None:
    """Mine what a burst leaves in the pool, then check every receipt.

    Automine mines one gas-limited block per arrival, so a burst can leave transactions
    pending with nothing arriving to mine them.
    """
    deadline = time.monotonic() + 120.0
    while int(rpc.call("txpool_status")["pending"], 16) > 0:
        if time.monotonic() > deadline:
            raise DevnetError("bench deployment transactions stay pending")
        rpc.call("evm_mine")
    rpc.wait_receipts(hashes)


def _settings(node: Anvil, dep: ChainDeployment, state_dir: Path) -> dict[str, object]:
    dexes: list[dict[str, object]] = [
        {"name": d.name, "kind": "uniswap_v2", "factory": d.factory, "fee_bps": d.fee_bps}
        for d in dep.v2
    ]
    dexes.append({"name": dep.v3.name, "kind": "uniswap_v3", "factory": dep.v3.factory})
    return {
        "engine": {"state_dir": str(state_dir)},
        "database": {"url": f"sqlite:///{state_dir}/mevstack.db"},
        "chains": [
            {
                "name": "ethereum",
                "chain_id": 1,
                "rpc": [node.rpc_url],
                "ws": [node.ws_url],
                "block_time": 1.0,
                "base_tokens": [dep.weth, dep.token("USDC").address],
                "wrapped_native": dep.weth,
                "strategies": ["arbitrage"],
                "dexes": dexes,
            }
        ],
    }


async def _observe_heads(
    ws_url: str, seen: dict[int, float], enough: asyncio.Event | None = None
) -> None:
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            )
        )
        async for raw in ws:
            message = json.loads(raw)
            if message.get("method") == "eth_subscription":
                number = int(message["params"]["result"]["number"], 16)
                seen.setdefault(number, time.monotonic())
                if enough is not None and len(seen) >= BLOCKS:
                    enough.set()


def _percentile(values: list[float], q: float) -> float:
    found = percentile(values, q)
    return float("nan") if found is None else found


async def _loop_lag(lags: list[float]) -> None:
    """How late a 10 ms timer wakes: what a scan holding the event loop costs everyone else."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)  # the probe itself: a timer whose lateness is the measure
        lags.append((loop.time() - due) * 1000.0)


async def _measure(
    node: Anvil, dep: ChainDeployment, state_dir: Path, *, in_process: bool
) -> list[Result]:
    mode = "scan process" if in_process else "scan inline"
    settings = parse_settings(_settings(node, dep, state_dir), source="bench", environ={})
    bus = MemoryBus()
    store = Store.open(settings.database.url)
    heads: dict[int, float] = {}
    first_event: dict[int, float] = {}
    enough = asyncio.Event()
    observer = asyncio.create_task(_observe_heads(node.ws_url, heads, enough))
    sub = await bus.subscribe("bench", events=["mev.opportunity"], maxsize=1_000_000)

    async def collect() -> None:
        async for event in sub:
            first_event.setdefault(int(event.data["block_number"]), time.monotonic())

    collector = asyncio.create_task(collect())
    engine = Engine(settings, bus=bus, store=store, scan_in_process=in_process)
    lags: list[float] = []
    await engine.start()
    lag_probe = asyncio.create_task(_loop_lag(lags))
    runtime = engine.runtimes["ethereum"]
    try:
        async with asyncio.timeout(BLOCKS * 3 + 60):
            await enough.wait()
    finally:
        await engine.stop()
        for task in (collector, observer, lag_probe):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
        await bus.aclose()
        store.close()
    lags = lags[len(lags) // 10 :]  # skip the cold start
    start = min(heads) + 2  # the first blocks include the engine's cold start (market build)
    latencies = [
        (first_event[n] - heads[n]) * 1000.0
        for n in sorted(heads)
        if n >= start and n in first_event and first_event[n] >= heads[n]
    ]
    scan = runtime.scan_times
    full, incremental = list(scan.full), list(scan.incremental)
    pools = runtime.status()["pools"]
    note = (
        f"{mode}: {pools} pools ({EXTRA_PAIRS} extra V2 pairs over {EXTRA_TOKENS} tokens), "
        f"noise trades ~every {TRADE_INTERVAL_S}s, {len(latencies)} blocks"
    )
    results: list[Result] = []
    if latencies:
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        results += [
            Result(f"engine block->opportunity p50 ({mode})", p50, "ms", target="<= 50 ms",
                   met=p50 <= 50, note=note),
            Result(f"engine block->opportunity p99 ({mode})", p99, "ms", target="<= 200 ms",
                   met=p99 <= 200, note=note),
        ]  # fmt: skip
    else:
        results.append(Result(f"engine block->opportunity ({mode})", float("nan"), "ms", note=note))
    if incremental:
        results += [
            Result(f"engine incremental scan p50 ({mode})", _percentile(incremental, 0.5), "ms"),
            Result(f"engine incremental scan p99 ({mode})", _percentile(incremental, 0.99), "ms"),
        ]
    if full:
        results.append(Result(f"engine full scan ({mode})", max(full), "ms"))
    if lags:
        results.append(Result(f"engine event-loop lag p99 ({mode})", _percentile(lags, 0.99), "ms"))
        results.append(Result(f"engine event-loop lag max ({mode})", max(lags), "ms"))
    return results


async def _measure_demo(world: DemoWorld) -> list[Result]:
    names = [c.spec.name for c in world.chains]
    heads: dict[str, dict[int, float]] = {n: {} for n in names}
    first_event: dict[str, dict[int, float]] = {n: {} for n in names}
    delivered: dict[str, dict[int, float]] = {n: {} for n in names}  # block.new: stream done
    trades: Counter[str] = Counter()
    backruns: Counter[str] = Counter()
    lags: list[float] = []
    tasks = [
        asyncio.create_task(_observe_heads(c.anvil.ws_url, heads[c.spec.name]))
        for c in world.chains
    ]
    try:
        async with running_stack(world.settings) as process:
            engine = process.engine
            sub = await engine.bus.subscribe(
                "bench",
                events=[EventName.MEV_OPPORTUNITY, EventName.BLOCK_NEW, *_TRADE_EVENTS],
                maxsize=1_000_000,
            )

            async def collect() -> None:
                async for event in sub:
                    now = time.monotonic()
                    if event.event is EventName.MEV_OPPORTUNITY and event.chain in first_event:
                        # a backrun is triggered by a pending transaction, not by the head
                        if event.data["kind"] != "arbitrage":
                            backruns[event.chain] += 1
                            continue
                        seen = first_event[event.chain]
                        seen.setdefault(int(event.data["block_number"]), now)
                    elif event.event is EventName.BLOCK_NEW and event.chain in delivered:
                        delivered[event.chain].setdefault(int(event.data["number"]), now)
                    elif event.event in _TRADE_EVENTS:
                        trades[event.event.value] += 1

            tasks.append(asyncio.create_task(collect()))
            tasks.append(asyncio.create_task(_loop_lag(lags)))
            runtimes = engine.runtimes
            await wait_until(
                lambda: all(r.market.builds > 0 for r in runtimes.values()),
                within=300,
                what="every chain's market built",
            )
            await asyncio.sleep(DEMO_SETTLE_S)  # the measurement window's own timing
            opened, lag_from, trades_before = time.monotonic(), len(lags), Counter(trades)
            await asyncio.sleep(DEMO_WINDOW_S)
            closed = time.monotonic()
            window_lags = lags[lag_from:]
            window_trades = trades - trades_before
            execution = (
                f"mode {engine.trading.mode}, auto_execute "
                f"{world.settings.engine.auto_execute}, executing on {len(engine.executions)} "
                f"chains; trades in window: {dict(window_trades) or 'none'}"
            )
            scans = {n: list(runtimes[n].scan_times.incremental) for n in names}
            pools = {n: runtimes[n].status()["pools"] for n in names}
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
    results: list[Result] = []
    overall: list[float] = []
    for name in names:
        blocks = [
            (n, t)
            for n, t in sorted(heads[name].items())
            if opened <= t <= closed - _DEMO_TAIL_S
            and n in first_event[name]
            and first_event[name][n] >= t
        ]
        counted = [(first_event[name][n] - t) * 1000.0 for n, t in blocks]
        # where the time goes: the head stream's fetches, then market update + scan + publish
        stream = [(delivered[name][n] - t) * 1000.0 for n, t in blocks if n in delivered[name]]
        engine_ms = [
            (first_event[name][n] - delivered[name][n]) * 1000.0
            for n, _ in blocks
            if n in delivered[name]
        ]
        in_window = sum(opened <= t <= closed - _DEMO_TAIL_S for t in heads[name].values())
        overall += counted
        scan = scans[name]
        note = (
            f"{pools[name]} pools; {len(counted)} of {in_window} blocks published an "
            f"arbitrage opportunity ({backruns[name]} backrun events not counted); "
            f"head->block.new p50/p99 {_percentile(stream, 0.5):.1f}/"
            f"{_percentile(stream, 0.99):.1f} ms, block.new->opportunity p50/p99 "
            f"{_percentile(engine_ms, 0.5):.1f}/{_percentile(engine_ms, 0.99):.1f} ms; "
            f"incremental scan p50/p99 {_percentile(scan, 0.5):.1f}/"
            f"{_percentile(scan, 0.99):.1f} ms"
        )
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            value = _percentile(counted, q) if counted else float("nan")
            results.append(
                Result(f"demo load block->opportunity {label} ({name})", value, "ms", note=note)
            )
    note = (
        f"{len(names)} chains, {DEMO_WINDOW_S:.0f} s window, {len(overall)} blocks; one-chain "
        f"target p50 <= 50 ms, p99 <= 200 ms; {execution}"
    )
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        value = _percentile(overall, q) if overall else float("nan")
        results.append(
            Result(f"demo load block->opportunity {label} (all)", value, "ms", note=note)
        )
    if window_lags:
        results.append(Result("demo load event-loop lag p99", _percentile(window_lags, 0.99), "ms"))
        results.append(Result("demo load event-loop lag max", max(window_lags), "ms"))
    return results


def demo_options(tmp: Path) -> DemoOptions:
    """The five-chain demo on free ports, its state under ``tmp``."""
    ports = [free_port() for _ in range(4)]
    return DemoOptions(
        state_dir=tmp / "demo",
        base_port=free_port_block(len(CHAIN_SPECS)),
        engine_port=ports[0],
        gateway_port=ports[1],
        ws_port=ports[2],
        dashboard_port=ports[3],
    )


def run_demo_load() -> list[Result]:
    """Block-to-opportunity latency while the whole five-chain demo runs in this process."""
    with tempfile.TemporaryDirectory() as tmp, demo_world(demo_options(Path(tmp))) as world:
        return asyncio.run(_measure_demo(world))


def run() -> list[Result]:
    return run_one_chain() + run_demo_load() + run_backrun_latency()


def run_one_chain() -> list[Result]:
    """Block-to-opportunity latency on one chain with ``EXTRA_PAIRS`` more pools (the target)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Anvil(
            chain_id=1,
            balance_eth=1_000_000,
            # full blocks while the extra pairs deploy must not price the pipeline out
            extra_args=["--block-base-fee-per-gas", "0"],
        ) as node,
    ):
        dep = deploy_chain(node.rpc_url)
        t0 = time.monotonic()
        extra = _deploy_extra_pairs(node.rpc_url, dep)
        print(f"bench_engine: {extra} extra V2 pairs deployed in {time.monotonic() - t0:.1f} s")
        traders = NoiseTraders(node.rpc_url, dep, seed=7)
        traders.setup()
        with DevnetRpc(node.rpc_url) as rpc:
            rpc.call("evm_setAutomine", [False])
            rpc.call("evm_setIntervalMining", [1])
        stop = threading.Event()
        thread = threading.Thread(
            target=traders.run, args=(stop,), kwargs={"interval": TRADE_INTERVAL_S}, daemon=True
        )
        thread.start()
        try:
            results: list[Result] = []
            for in_process in (True, False):
                state_dir = Path(tmp) / ("process" if in_process else "inline")
                state_dir.mkdir()
                results += asyncio.run(_measure(node, dep, state_dir, in_process=in_process))
            return results
        finally:
            stop.set()
            thread.join(timeout=10)
            traders.close()


if __name__ == "__main__":
    print(Result.table(run()))


# -- pending victim -> backrun: the mempool polled vs pushed over the WebSocket ----------------

BACKRUN_SAMPLES = 40
V2_SWAP_EXACT_IN = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
_ANVIL_KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's own


async def _backrun_latencies(
    node: Anvil, dep: ChainDeployment, state_dir: Path, *, ws: bool
) -> list[float]:
    """Milliseconds from each victim's ``eth_sendRawTransaction`` to its backrun's event."""
    from eth_account import Account

    from mevstack.chain.rpc import RpcClient

    dexes: list[dict[str, object]] = [
        {"name": d.name, "kind": "uniswap_v2", "factory": d.factory, "fee_bps": d.fee_bps}
        for d in dep.v2
    ]
    dexes.append({"name": dep.v3.name, "kind": "uniswap_v3", "factory": dep.v3.factory})
    chain: dict[str, object] = {
        "name": "ethereum",
        "chain_id": 1,
        "rpc": [node.rpc_url],
        "block_time": 1.0,
        "base_tokens": [dep.weth, dep.token("USDC").address],
        "wrapped_native": dep.weth,
        "strategies": ["backrun"],
        "dexes": dexes,
    }
    if ws:
        chain["ws"] = [node.ws_url]
    settings = parse_settings(
        {
            "engine": {"state_dir": str(state_dir)},
            "database": {"url": f"sqlite:///{state_dir}/mevstack.db"},
            "chains": [chain],
        },
        source="bench",
        environ={},
    )
    bus = MemoryBus()
    store = Store.open(settings.database.url)
    seen: dict[tuple[str, str], float] = {}  # (trigger, status) -> when its event arrived
    sub = await bus.subscribe("bench", events=["mev.opportunity"], maxsize=1_000_000)

    async def collect() -> None:
        async for event in sub:
            if event.data["kind"] == "backrun":
                key = (str(event.data["trigger_tx"]), str(event.data["status"]))
                seen.setdefault(key, time.monotonic())

    def arrived(key: tuple[str, str]) -> Callable[[], bool]:
        return lambda: key in seen

    collector = asyncio.create_task(collect())
    engine = Engine(settings, bus=bus, store=store)
    runtime = engine.runtimes["ethereum"]
    client = RpcClient(node.rpc_url)
    account = Account.from_key(_ANVIL_KEY0)
    router = next(d.router for d in dep.v2 if d.name == "uniswap-v2")
    usdc = dep.token("USDC").address
    rng = random.Random(11)
    latencies: list[float] = []
    await engine.start()
    try:
        await wait_until(lambda: runtime.market.pools is not None, 60, "the market")
        if ws:
            mempool = runtime.mempool
            assert mempool is not None
            await wait_until(lambda: mempool.subscribed and mempool.caught_up, 10, "the socket")
        for i in range(BACKRUN_SAMPLES):
            nonce = int(
                await client.request("eth_getTransactionCount", [account.address, "pending"]), 16
            )
            base_fee = int(
                (await client.request("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"],
                16,
            )
            data = encode_call(
                V2_SWAP_EXACT_IN, 300 * 10**18 + i, 0, [dep.weth, usdc], account.address, DEADLINE
            )
            signed = account.sign_transaction(
                {
                    "chainId": 1,
                    "nonce": nonce,
                    "to": router,
                    "data": data,
                    "value": 0,
                    "gas": 400_000,
                    "maxFeePerGas": 2 * base_fee + 10**9,
                    "maxPriorityFeePerGas": 10**9,
                }
            )
            victim = "0x" + signed.hash.hex().removeprefix("0x")
            # A random phase against the poller's cadence, as real victims have.
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            sent_at = time.monotonic()
            await client.request(
                "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex().removeprefix("0x")]
            )
            await wait_until(arrived((victim, "detected")), 15, "the victim's backrun")
            latencies.append((seen[(victim, "detected")] - sent_at) * 1000.0)
            # Leave the mempool empty for the next victim; a block makes the pushed mode look.
            await client.request("anvil_dropAllTransactions", [])
            await client.request("evm_mine", [])
            await wait_until(arrived((victim, "expired")), 15, "the backrun withdrawn")
    finally:
        await engine.stop()
        await client.aclose()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await bus.aclose()
        store.close()
    return latencies


def run_backrun_latency() -> list[Result]:
    """Victim ``eth_sendRawTransaction`` -> backrun ``mev.opportunity``: polled vs subscribed.

    One anvil (chain id 1, blocks mined only by the bench) with the devnet deployment; account 0
    holds WETH and has approved the uniswap-v2 Router02.  Each sample signs a 300 WETH → USDC
    swap, sends it raw after a random pause (so that its phase against the 250 ms polling
    cadence is uniform), waits for the backrun event, then drops the mempool and mines an empty
    block so that the backrun is withdrawn before the next sample.  The engine runs once without
    ``ws`` (``txpool_content`` polling, the baseline) and once with it, in this process.
    """
    with tempfile.TemporaryDirectory() as tmp, Anvil(chain_id=1, balance_eth=1_000_000) as node:
        dep = deploy_chain(node.rpc_url)
        router = next(d.router for d in dep.v2 if d.name == "uniswap-v2")
        with DevnetRpc(node.rpc_url) as rpc:
            rpc.transact(dep.deployer, dep.weth, encode_call("deposit()"), value=20_000 * 10**18)
            rpc.transact(
                dep.deployer, dep.weth, encode_call("approve(address,uint256)", router, MAX_UINT256)
            )
            rpc.call("evm_setAutomine", [False])
        figures: dict[bool, list[float]] = {}
        for ws in (False, True):
            state_dir = Path(tmp) / ("ws" if ws else "poll")
            state_dir.mkdir()
            figures[ws] = asyncio.run(_backrun_latencies(node, dep, state_dir, ws=ws))
    note = f"{BACKRUN_SAMPLES} victims each; poll interval 250 ms (block_time 1 s)"
    results: list[Result] = []
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        results.append(
            Result(
                f"backrun victim->opportunity {label} (subscribed; baseline: polled)",
                _percentile(figures[True], q),
                "ms",
                baseline=_percentile(figures[False], q),
                note=note,
            )
        )
    return results
