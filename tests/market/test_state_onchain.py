"""Log-driven pool state against the real chain: random swaps, mints and burns through the real
routers and position manager, fed block by block from the node's logs; then reorgs of depth 1-5.

After every phase the state of every pool must equal a fresh read of the chain, and every swap
must move exactly the amounts our math predicted from the log-driven state before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mevstack.chain.errors import RpcResponseError
from mevstack.chain.rpc import RpcClient
from mevstack.errors import DevnetError
from mevstack.market import abi
from mevstack.market.base import PoolInfo, same_state
from mevstack.market.pools import V2PoolState, V3PoolState
from mevstack.market.pools.uniswap_v3 import SWAP
from mevstack.market.registry import PoolRegistry, get_logs_adaptive, virtual_reserves
from mevstack.market.state import PoolStore, run_spot_checks, spot_check
from mevstack.market.tokens import StoreTokenCache
from mevstack.market.uniswap_v2 import reserves_after_swap
from mevstack.market.uniswap_v3.tick_math import MAX_TICK, MIN_TICK, get_sqrt_ratio_at_tick
from mevstack.obs.metrics import sample_value
from mevstack.store.store import Store
from tests.market.conftest import Trader, dex_specs


async def _load(client: RpcClient, infos: list[PoolInfo], block: int) -> dict[str, Any]:
    from mevstack.market.pools import KINDS
    from mevstack.market.state import load_pools

    return {i.address.lower(): s for i, s in await load_pools(client, KINDS, infos, block)}


async def _feed(registry: PoolRegistry, store: PoolStore, client: RpcClient, number: int) -> str:
    block = await client.request("eth_getBlockByNumber", [hex(number), False])
    logs = await client.request("eth_getLogs", [{"blockHash": block["hash"]}])
    await registry.on_block(store, number, block["hash"], logs)
    return str(block["hash"])


async def _assert_equal_to_chain(store: PoolStore, client: RpcClient) -> None:
    head = store.head
    assert head is not None
    fresh = await _load(client, store.infos(), head[0])
    assert len(fresh) == len(store)
    for key, chain_state in fresh.items():
        kept = store.get(key)
        assert kept is not None and same_state(kept, chain_state), f"pool {key} diverged"


class Driver:
    """Random market activity through the real periphery, checked against our math."""

    def __init__(self, market: Trader, store: PoolStore, rng: random.Random) -> None:
        self.market = market
        self.store = store
        self.rng = rng
        self.positions: list[tuple[PoolInfo, int]] = []
        infos = store.infos()
        self.v2 = [i for i in infos if i.kind == "uniswap_v2"]
        self.v3 = [i for i in infos if i.kind == "uniswap_v3"]

    def act(self, kind: str) -> dict[str, Any]:
        """One transaction; returns its receipt plus what we expect it to do."""
        rng = self.rng
        if kind == "v2":
            info = rng.choice(self.v2)
            state = self.store.get(info.address)
            assert isinstance(state, V2PoolState)
            zfo = rng.random() < 0.5
            reserve_in = state.reserve0 if zfo else state.reserve1
            amount = reserve_in * rng.choice([1, 10, 100, 500]) // 1000 + 1
            quote = state.quote_exact_in(zfo, amount)
            receipt = self.market.swap_v2(info, zfo, amount)
            expected = reserves_after_swap(
                state.reserve0, state.reserve1, zfo, amount, quote.amount_out
            )
            return {"receipt": receipt, "pool": info, "v2_reserves": expected}
        info = rng.choice(self.v3)
        state = self.store.get(info.address)
        assert isinstance(state, V3PoolState)
        if kind in ("v3_in", "v3_out"):
            zfo = rng.random() < 0.5
            reserve = virtual_reserves(state)[0 if zfo else 1]
            amount = max(1, reserve * rng.choice([1, 30, 100, 300]) // 100)
            while amount > 1 and state.swap(zfo, amount).liquidity == 0:
                amount //= 10  # draining a pool walks every empty word: too much gas for a test
            limit = None
            if kind == "v3_out":
                # Ask for part of what that input would buy, so the pool can always fill it.
                amount = max(1, state.quote_exact_in(zfo, amount).amount_out * 9 // 10)
                outcome = state.swap(zfo, -amount)
            else:
                if rng.random() < 0.4:
                    # A price limit on a tick boundary: where the swap stops, and the tick rule.
                    step = state.tick_spacing * rng.randint(1, 30)
                    target = state.tick // state.tick_spacing * state.tick_spacing
                    target = target - step if zfo else target + step
                    limit = get_sqrt_ratio_at_tick(min(max(target, MIN_TICK + 1), MAX_TICK - 1))
                outcome = state.swap(zfo, amount, limit)
            receipt = self.market.swap_v3(
                info, zfo, amount, exact_in=kind == "v3_in", limit=limit or 0
            )
            return {"receipt": receipt, "pool": info, "v3_outcome": outcome}
        if kind == "mint" or not self.positions:
            spacing = state.tick_spacing
            lower = (state.tick // spacing + rng.randint(-40, 10)) * spacing
            upper = lower + spacing * rng.randint(1, 40)
            token_id, receipt = self.market.mint_v3(info, lower, upper, rng.choice([5_000, 50_000]))
            self.positions.append((info, token_id))
            return {"receipt": receipt, "pool": info}
        info, token_id = self.positions.pop(rng.randrange(len(self.positions)))
        liquidity = self.market.position_liquidity(token_id)
        part = liquidity if rng.random() < 0.6 else liquidity // 2
        receipt = self.market.burn_v3(token_id, part)
        if part != liquidity:
            self.positions.append((info, token_id))
        return {"receipt": receipt, "pool": info}

    def check(self, done: dict[str, Any]) -> None:
        """The transaction did exactly what our math said it would."""
        state = self.store.get(done["pool"].address)
        if "v2_reserves" in done:
            assert isinstance(state, V2PoolState)
            assert (state.reserve0, state.reserve1) == done["v2_reserves"]
        if "v3_outcome" in done:
            assert isinstance(state, V3PoolState)
            outcome = done["v3_outcome"]
            swap_log = next(
                lg
                for lg in done["receipt"]["logs"]
                if lg["topics"][0] == SWAP and lg["address"].lower() == state.address.lower()
            )
            a0, a1 = (abi.to_signed(w) for w in abi.words(swap_log["data"], 2))
            assert (a0, a1) == (outcome.amount0, outcome.amount1)
            assert (state.sqrt_price_x96, state.tick, state.liquidity) == (
                outcome.sqrt_price_x96,
                outcome.tick,
                outcome.liquidity,
            )


async def test_log_driven_state_equals_the_chain_through_activity_and_reorgs(
    market: Trader,
) -> None:
    url = market.node.rpc_url
    snapshot = market.rpc.call("evm_snapshot")
    client = RpcClient(url, timeout=60)
    try:
        registry = PoolRegistry(client, dex_specs(market.dep), chain="devnet", chain_id=1)
        latest = await client.request("eth_getBlockByNumber", ["latest", False])
        store = await registry.build_store(int(latest["number"], 16), latest["hash"])
        assert {i.address for i in store.infos()} == {p.address for p in market.infos()}

        driver = Driver(market, store, random.Random(11))
        kinds = ["v2", "v3_in", "v3_in", "v3_out", "mint", "burn"]
        crossed = 0
        for _ in range(36):
            done = driver.act(driver.rng.choice(kinds))
            await _feed(registry, store, client, int(done["receipt"]["blockNumber"], 16))
            driver.check(done)
            if "v3_outcome" in done:
                crossed += done["v3_outcome"].initialized_ticks_crossed
        assert crossed >= 10  # the activity really moved prices across initialised ticks
        await _assert_equal_to_chain(store, client)

        for depth in range(1, 6):
            assert store.head is not None
            base = store.head[0]
            before = {s.address: s for s in store.pools()}
            old_hashes = []
            for _ in range(depth):
                done = driver.act(driver.rng.choice(["v2", "v3_in", "mint", "burn"]))
                old_hashes.append(
                    await _feed(registry, store, client, int(done["receipt"]["blockNumber"], 16))
                )
            await client.request("anvil_reorg", [depth, []])
            head = int(await client.request("eth_blockNumber", []), 16)
            assert head == base + depth
            store.rollback(base)
            assert {s.address: s for s in store.pools()} == before
            for number in range(base + 1, head + 1):
                new_hash = await _feed(registry, store, client, number)
                assert new_hash != old_hashes[number - base - 1]
            await _assert_equal_to_chain(store, client)
            # Positions minted in the dropped blocks no longer exist on chain.
            owned = []
            for info, token_id in driver.positions:
                try:
                    market.position_liquidity(token_id)
                    owned.append((info, token_id))
                except DevnetError:  # the NFT was minted in a dropped block
                    continue
            driver.positions = owned
    finally:
        await client.aclose()
        market.rpc.call("evm_revert", [snapshot])


async def test_spot_check_reports_and_resyncs_a_divergent_pool(market: Trader) -> None:
    client = RpcClient(market.node.rpc_url, timeout=60)
    try:
        registry = PoolRegistry(client, dex_specs(market.dep), chain="spotcheck", chain_id=1)
        latest = await client.request("eth_getBlockByNumber", ["latest", False])
        store = await registry.build_store(int(latest["number"], 16), latest["hash"])
        assert await spot_check(store, client, sample_size=100) == []
        victim = next(i for i in store.infos() if i.kind == "uniswap_v2")
        good = store.get(victim.address)
        assert isinstance(good, V2PoolState)
        store.put(victim, replace(good, reserve0=good.reserve0 + 1))
        found = await spot_check(store, client, sample_size=100)
        assert [d.address for d in found] == [victim.address]
        assert store.get(victim.address) == good
        assert sample_value("mevstack_market_pool_divergences_total", {"chain": "spotcheck"}) == 1.0

        # The periodic runner finds a V3 divergence on its own.
        v3_victim = next(i for i in store.infos() if i.kind == "uniswap_v3")
        v3_good = store.get(v3_victim.address)
        assert isinstance(v3_good, V3PoolState)
        store.put(v3_victim, replace(v3_good, liquidity=v3_good.liquidity + 1))
        task = asyncio.create_task(run_spot_checks(store, client, every_s=0.05, sample_size=100))
        try:
            deadline = time.monotonic() + 20
            while store.get(v3_victim.address) != v3_good:
                assert time.monotonic() < deadline, "the periodic spot check never resynced"
                await asyncio.sleep(0.02)  # polling a condition with a deadline
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert sample_value("mevstack_market_pool_divergences_total", {"chain": "spotcheck"}) == 2.0
    finally:
        await client.aclose()


class RangeLimitedNode:
    """A real node behind a provider-style limit: eth_getLogs over more than 3 blocks fails."""

    def __init__(self, inner: RpcClient) -> None:
        self.inner = inner
        self.log_calls = 0

    async def request(self, method: str, params: list[Any]) -> Any:
        if method == "eth_getLogs":
            self.log_calls += 1
            span = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16)
            if span >= 3:
                raise RpcResponseError(-32005, "query returned more than 10000 results")
        return await self.inner.request(method, params)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        return await self.inner.batch(calls)


async def test_discovery_adapts_its_log_range_to_the_node(market: Trader) -> None:
    client = RpcClient(market.node.rpc_url, timeout=60)
    try:
        head = int(await client.request("eth_blockNumber", []), 16)
        limited = RangeLimitedNode(client)
        spec = dex_specs(market.dep)[-1]
        from mevstack.market.pools.uniswap_v3 import POOL_CREATED

        logs = await get_logs_adaptive(limited, spec.factory, POOL_CREATED, 0, head, chunk=1000)
        plain = await get_logs_adaptive(client, spec.factory, POOL_CREATED, 0, head)
        v3 = {p.address for p in market.infos() if p.kind == "uniswap_v3"}
        assert logs == plain and len(logs) == len(v3)
        assert limited.log_calls > head // 3
        registry = PoolRegistry(limited, [spec], chain="devnet", chain_id=1)
        assert {i.address for i in await registry.discover(0, head)} == v3
        # Every address is checked against the init code hash; a wrong hash rejects them all.
        wrong = replace(spec, init_code_hash="0x" + "11" * 32)
        assert await PoolRegistry(client, [wrong]).discover(0, head) == []
    finally:
        await client.aclose()


class CountingNode:
    """A real node that counts the calls made through it."""

    def __init__(self, inner: RpcClient) -> None:
        self.inner = inner
        self.calls = 0

    async def request(self, method: str, params: list[Any]) -> Any:
        self.calls += 1
        return await self.inner.request(method, params)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.calls += len(calls)
        return await self.inner.batch(calls)


async def test_registry_admission_rules(market: Trader, tmp_path: Path) -> None:
    dep = market.dep
    db = Store.open(f"sqlite:///{tmp_path / 'tokens.db'}")
    client = RpcClient(market.node.rpc_url, timeout=60)
    try:
        node = CountingNode(client)
        latest = await client.request("eth_getBlockByNumber", ["latest", False])
        number = int(latest["number"], 16)
        usdc, link = dep.token("USDC"), dep.token("LINK")
        judged: list[str] = []

        async def detector(token: str) -> str | None:
            judged.append(token)
            return "fee on transfer" if token == link.address.lower() else None

        registry = PoolRegistry(
            node,
            dex_specs(dep),
            chain="devnet",
            chain_id=1,
            unsafe_detector=detector,
            token_cache=StoreTokenCache(db),
        )
        meta = await registry.token_metadata([usdc.address, dep.weth])
        assert meta[usdc.address.lower()].decimals == 6
        assert meta[usdc.address.lower()].symbol == "USDC"
        before = node.calls
        assert (await registry.token_metadata([usdc.address]))[usdc.address.lower()].decimals == 6
        assert node.calls == before  # read once, then served from the cache

        store = await registry.build_store(number, latest["hash"])
        tokens = {t for i in store.infos() for t in (i.token0, i.token1)}
        assert link.address not in tokens and usdc.address in tokens
        assert len(judged) == len(set(judged))  # each token judged once
        assert registry.unsafe[link.address.lower()] == "fee on transfer"
        # Metadata and verdicts persist in the store: a restarted registry reads no token.
        again = CountingNode(client)
        restarted = PoolRegistry(
            again,
            dex_specs(dep),
            chain="devnet",
            chain_id=1,
            unsafe_detector=detector,
            token_cache=StoreTokenCache(db),
        )
        judged.clear()
        meta_again = await restarted.token_metadata([usdc.address, link.address])
        assert again.calls == 0 and meta_again[link.address.lower()].safe is False
        assert {
            i.address for i in (await restarted.build_store(number, latest["hash"])).infos()
        } == {i.address for i in store.infos()}
        assert judged == []

        allow = PoolRegistry(client, dex_specs(dep), allowlist=[usdc.address, dep.weth])
        only = await allow.build_store(number, latest["hash"])
        assert {frozenset((i.token0, i.token1)) for i in only.infos()} == {
            frozenset((usdc.address, dep.weth))
        }
        # A per-chain minimum: 1,000 WETH in the pool (in-range virtual reserves for V3).
        strict = PoolRegistry(client, dex_specs(dep), min_liquidity={dep.weth: 1000 * 10**18})
        rich = await strict.build_store(number, latest["hash"])
        assert 0 < len(rich) < len(dep.pools)
        for state in rich.pools():
            r0, r1 = virtual_reserves(state)
            assert (r0 if state.token0 == dep.weth else r1) >= 1000 * 10**18
    finally:
        await client.aclose()
        db.close()


async def test_head_stream_keeps_the_state_through_a_reorg(market: Trader) -> None:
    """The chain team's HeadStream feeding the store (market.feed), including its Rollback."""
    from mevstack.chain.heads import HeadStream, Rollback
    from mevstack.market.feed import apply_item, register

    snapshot = market.rpc.call("evm_snapshot")
    client = RpcClient(market.node.rpc_url, timeout=60)
    try:
        registry = PoolRegistry(client, dex_specs(market.dep), chain="devnet", chain_id=1)
        latest = await client.request("eth_getBlockByNumber", ["latest", False])
        number = int(latest["number"], 16)
        store = await registry.build_store(number, latest["hash"])
        stream = HeadStream("devnet", client, start_block=number + 1)
        consumer = register(stream, registry)
        driver = Driver(market, store, random.Random(5))
        items: list[Any] = []

        async def drain() -> None:
            await stream.sync()
            while not consumer.queue.empty():
                item = consumer.queue.get_nowait()
                items.append(item)
                await apply_item(registry, store, item)

        for _ in range(3):
            for _ in range(3):
                driver.act(driver.rng.choice(["v2", "v3_in", "mint"]))
            await drain()  # the store follows: the next amounts are sized on current state
        await _assert_equal_to_chain(store, client)
        await client.request("anvil_reorg", [3, []])
        await drain()
        assert any(isinstance(i, Rollback) for i in items)
        await _assert_equal_to_chain(store, client)
    finally:
        await client.aclose()
        market.rpc.call("evm_revert", [snapshot])


async def test_v3_reader_equals_word_by_word_reads(market: Trader) -> None:
    """The state-override reader and plain per-word calls load identical V3 states."""
    from mevstack.market.pools.uniswap_v3 import UniswapV3Kind

    client = RpcClient(market.node.rpc_url, timeout=60)
    try:
        infos = [i for i in market.infos() if i.kind == "uniswap_v3"]
        block = int(await client.request("eth_blockNumber", []), 16)
        kind = UniswapV3Kind()
        by_lens = await kind.load_states(client, infos, block)
        by_words = await kind.load_states_by_words(client, infos, block)
        assert by_lens == by_words
        assert all(isinstance(s, V3PoolState) and len(s.liquidity_net) >= 12 for s in by_lens)
    finally:
        await client.aclose()
