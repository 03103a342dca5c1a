"""Everything one chain needs at run time: chain services, its market, and its strategy agents.

A :class:`ChainRuntime` composes the chain's :class:`ChainServices` (endpoint pool, node
monitor → ``node.status``, gas oracle → ``gas.price``, head stream → ``block.new`` /
``chain.reorg``) with a :class:`Market` (the pools of the configured DEXes, built at the first
block the stream delivers and then moved forward by each block's logs, rolled back on a reorg)
and one :class:`~mevstack.engine.agents.Agent` per strategy.

Blocks reach the market from the stream one by one, in order, never coalesced: every log must be
applied.  Agents only get a :class:`MarketTick` ("the market moved") through their bounded,
coalescing inbox; what changed is accumulated per consumer in a :class:`ChangeFeed`, so a tick
that is coalesced away loses nothing — the next scan covers the union of the changes, and a
rollback or rebuild turns the next scan into a full rescan.

The arbitrage agent's :class:`ArbitrageWorker` re-evaluates only cycles touching changed pools,
keeps the opportunity lifecycle in an :class:`OpportunityBook` (new / changed / expired; the
book is owned by the runtime so a restarted worker does not forget what was published), publishes
each change as ``mev.opportunity``, upserts it into the store, and prunes the store on a
retention policy.  Scan time per block is measured (``scan_times``) and exposed in the agent
status.  The backrun agent (``backrun_agent``) is fed by the mempool instead of blocks: the
``newPendingTransactions`` subscription when the chain has a WebSocket, else (and while no socket
serves) polling; with the subscription it is also ticked at each block.
Tokens enter the market only after the unsafe-token round trip (``token_safety``).  Every
opportunity leaves with its start token's symbol and decimals (``token_symbol`` /
``token_decimals``) from the registry's token metadata, so clients can show token units.

The engine wires three things in: the trading state's blocklist (``blocked_tokens`` /
``blocked_pools``: no opportunity through them is published, and :meth:`ChainRuntime.withdraw`
expires live ones at once), listeners of each published batch (auto-execution), and
``before_block`` hooks that see each block with the market still in the state before it (the
exploit watch).

An executed opportunity is never expired: once the store shows it ``submitted`` (or settled) it
follows its trade (the execution publishes those changes), and the runtime only forgets it.  A
sighting of the same path after that is a new episode with an id of its own
(:meth:`OpportunityBook.renew`), listed and executable beside the executed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mevstack.chain.errors import RpcError
from mevstack.chain.gas import GasQuote, Publisher
from mevstack.chain.heads import LogFilter, Rollback, StreamItem
from mevstack.chain.rpc import JsonRpc
from mevstack.chain.service import ChainServices
from mevstack.config import ChainConfig
from mevstack.engine.agents import Agent, AgentSupervisor
from mevstack.engine.backrun_agent import BackrunWorker, MempoolPoller, MempoolTick, PendingFeed
from mevstack.engine.scan_process import ScanProcess, build_request
from mevstack.engine.token_safety import round_trip_detector
from mevstack.events import EventName, utc_now_iso
from mevstack.market.base import DexSpec, PoolState
from mevstack.market.errors import MarketError
from mevstack.market.pools import KINDS
from mevstack.market.registry import PoolRegistry
from mevstack.market.state import PoolStore
from mevstack.market.tokens import TokenMeta
from mevstack.store import Store
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.opportunity import Opportunity, episode_id
from mevstack.strategy.valuation import GasInputs

log = logging.getLogger(__name__)

EXECUTED_STATUSES = ("submitted", "included", "failed")

WIRED_STRATEGIES = ("arbitrage", "backrun")


# -- pure helpers -----------------------------------------------------------------------------


def dex_specs(chain: ChainConfig) -> list[DexSpec]:
    """The market's view of the chain's ``[[chains.dexes]]``."""
    return [
        DexSpec(
            name=d.name,
            kind=d.kind,
            factory=d.factory,
            fee_bps=30 if d.fee_bps is None else d.fee_bps,
            init_code_hash=d.init_code_hash,
        )
        for d in chain.dexes
    ]


def gas_inputs(quote: GasQuote) -> GasInputs:
    """Gas price for a scan: next block's base fee (this block's where the chain's rule gives
    no prediction) plus the median tip, and the L1 data fee of an executor call."""
    doc = quote.to_json()
    if doc["next_base_fee_wei"] is None:
        doc["next_base_fee_wei"] = doc["base_fee_wei"]
    return GasInputs.from_gas_quote(doc)


class PoolStates(Mapping[str, PoolState]):
    """A read-only ``address -> state`` view of a PoolStore (any address case), without a copy."""

    def __init__(self, pools: PoolStore) -> None:
        self._pools = pools

    def __getitem__(self, address: str) -> PoolState:
        state = self._pools.get(address)
        if state is None:
            raise KeyError(address)
        return state

    def get(self, address: str, default: Any = None) -> Any:
        state = self._pools.get(address)
        return default if state is None else state

    def __iter__(self) -> Iterator[str]:
        return iter([s.address for s in self._pools.pools()])

    def __len__(self) -> int:
        return len(self._pools)


def _material(opportunity: Opportunity) -> Opportunity:
    """What makes two sightings of one opportunity the same (amounts and estimates, not time)."""
    return replace(opportunity, block_number=0, detected_at="", expires_at_block=0)


@dataclass
class OpportunityBook:
    """Which opportunities of one chain are alive, and what changed with each scan (pure).

    Scans name a path by its path id; the book gives each episode of a path (first seen → expired
    or executed) an id of its own (:func:`episode_id`), which is what is published and stored.
    """

    active: dict[str, Opportunity] = field(default_factory=dict)
    _episodes: dict[str, str] = field(default_factory=dict)  # path id -> current episode id
    _paths: dict[str, str] = field(default_factory=dict)  # episode id -> path id

    def _episode(self, opportunity: Opportunity) -> Opportunity:
        ident = self._episodes.get(opportunity.id)
        if ident is None:
            ident = episode_id(opportunity.id, opportunity.block_number)
            self._episodes[opportunity.id] = ident
            self._paths[ident] = opportunity.id
        return replace(opportunity, id=ident)

    def end(self, ident: str) -> None:
        """Forget the live episode ``ident`` (expired or executed): its path starts anew."""
        self.active.pop(ident, None)
        path = self._paths.pop(ident, None)
        if path is not None and self._episodes.get(path) == ident:
            del self._episodes[path]

    def knows(self, ident: str) -> bool:
        return ident in self._paths

    def renew(self, opportunity: Opportunity) -> Opportunity:
        """A new episode for a live sighting whose episode was executed meanwhile (its id is
        derived from the executed one's, so it differs even within the same block)."""
        path = self._paths.get(opportunity.id, opportunity.id)
        self.end(opportunity.id)
        ident = episode_id(opportunity.id, opportunity.block_number)
        self._episodes[path] = ident
        self._paths[ident] = path
        fresh = replace(opportunity, id=ident)
        self.active[ident] = fresh
        return fresh

    def update(self, found: Sequence[Opportunity], scope: set[str] | None) -> list[Opportunity]:
        """Record a scan's results (by path id); returns what to publish, by episode id: new or
        changed opportunities (with their first ``detected_at``) and, marked ``expired``, alive
        ones whose cycle was re-evaluated (a pool of its path in ``scope``; ``None``:
        everything) and not found."""
        out: list[Opportunity] = []
        seen: set[str] = set()
        for sighting in found:
            opportunity = self._episode(sighting)
            seen.add(opportunity.id)
            old = self.active.get(opportunity.id)
            if old is not None:
                opportunity = replace(opportunity, detected_at=old.detected_at)
            if old is None or _material(old) != _material(opportunity):
                out.append(opportunity)
            self.active[opportunity.id] = opportunity
        for ident, old in list(self.active.items()):
            if ident in seen:
                continue
            if scope is None or any(h.pool.lower() in scope for h in old.path):
                self.end(ident)
                out.append(old.with_status("expired"))
        return out


# -- the market -------------------------------------------------------------------------------


class ChangeFeed:
    """Pools changed since a consumer last looked; ``None`` from :meth:`take`: rescan all."""

    def __init__(self) -> None:
        self._changed: set[str] = set()
        self._full = True

    def add(self, changed: set[str]) -> None:
        self._changed |= changed

    def invalidate(self) -> None:
        self._full = True
        self._changed.clear()

    def take(self) -> set[str] | None:
        if self._full:
            self._full = False
            self._changed = set()
            return None
        changed, self._changed = self._changed, set()
        return changed


@dataclass(frozen=True, slots=True)
class MarketTick:
    """What agents receive: the market is now at ``block_number``."""

    block_number: int
    received_at: float  # time.monotonic() when the stream delivered the block


class Market:
    """One chain's pools: discovered and loaded at a block, then moved forward by logs."""

    def __init__(
        self,
        config: ChainConfig,
        rpc: JsonRpc,
        *,
        max_history: int = 128,
        check_tokens: bool = True,
    ) -> None:
        self.config = config
        self.registry = PoolRegistry(
            rpc,
            dex_specs(config),
            chain=config.name,
            chain_id=config.chain_id,
            unsafe_detector=round_trip_detector(rpc, config) if check_tokens else None,
        )
        self.max_history = max_history
        self.pools: PoolStore | None = None
        self.feeds: list[ChangeFeed] = []
        self.builds = 0
        self.last_build_s = 0.0

    def log_filter(self) -> LogFilter:
        """The logs the market needs: pool state changes and factory creation events.

        By topic, not address, so that pools created later are covered without re-registering.
        """
        kinds = [KINDS[d.kind] for d in self.config.dexes if d.kind in KINDS]
        topics = sorted({t for k in kinds for t in (k.creation_topic, *k.pool_topics)})
        return LogFilter.of(topics0=topics)

    def feed(self) -> ChangeFeed:
        feed = ChangeFeed()
        self.feeds.append(feed)
        return feed

    async def build(self, number: int, block_hash: str) -> PoolStore:
        """Cold start at ``number``: discover every pool of the configured factories and load it."""
        started = time.monotonic()
        self.pools = await self.registry.build_store(
            number, block_hash, max_history=self.max_history
        )
        self.builds += 1
        self.last_build_s = time.monotonic() - started
        for feed in self.feeds:
            feed.invalidate()
        log.info(
            "chain %s: market built at block %d: %d pools in %.2fs",
            self.config.name,
            number,
            len(self.pools),
            self.last_build_s,
        )
        return self.pools

    async def apply(self, item: StreamItem) -> int | None:
        """Move the market with one stream item; the block it is now at (None: not built)."""
        if isinstance(item, Rollback):
            if self.pools is None:
                return None
            try:
                self.pools.rollback(item.to_block)
            except MarketError as exc:
                log.warning("chain %s: %s; rebuilding at the next block", self.config.name, exc)
                self.pools = None
                return None
            if item.to_block < 0:
                self.pools = None
                return None
            for feed in self.feeds:
                feed.invalidate()
            head = self.pools.head
            return None if head is None else head[0]
        header = item.header
        if self.pools is None:
            await self.build(header.number, header.hash)
            return header.number
        changed = await self.registry.on_block(self.pools, header.number, header.hash, item.logs)
        for feed in self.feeds:
            feed.add(changed)
        return header.number


# -- the arbitrage agent ----------------------------------------------------------------------


@dataclass
class Retention:
    """Keeps the opportunity table bounded: the newest ``keep_per_chain`` rows of each chain,
    none older than ``max_age``; applied every ``every_blocks`` scans."""

    keep_per_chain: int = 10_000
    max_age: timedelta = timedelta(days=1)
    every_blocks: int = 50


@dataclass
class ScanTimes:
    """Wall time (ms) of recent scans, incremental and full apart (a full one is much longer)."""

    incremental: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    full: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    last_ms: float = 0.0
    full_scans: int = 0
    incremental_scans: int = 0

    def add(self, ms: float, full: bool) -> None:
        self.last_ms = ms
        if full:
            self.full.append(ms)
            self.full_scans += 1
        else:
            self.incremental.append(ms)
            self.incremental_scans += 1

    def to_json(self) -> dict[str, Any]:
        p50, p99 = percentile(self.incremental, 0.5), percentile(self.incremental, 0.99)
        return {
            "last_ms": round(self.last_ms, 3),
            "incremental_p50_ms": None if p50 is None else round(p50, 3),
            "incremental_p99_ms": None if p99 is None else round(p99, 3),
            "full_max_ms": round(max(self.full), 3) if self.full else None,
            "full_scans": self.full_scans,
            "incremental_scans": self.incremental_scans,
        }


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ArbitrageWorker:
    """Scans the market after each tick (inline, or in the engine's scan process when it has
    one); see the module docstring."""

    def __init__(self, runtime: ChainRuntime, feed: ChangeFeed) -> None:
        self.runtime = runtime
        self.terms = ChainTerms.from_config(runtime.config)
        self.scanner = ArbitrageScanner(self.terms)
        self.feed = feed
        self.feed.invalidate()  # a fresh worker (start, restart after a crash) rescans it all
        self._indexed = 0

    async def handle(self, tick: MarketTick) -> int:
        runtime = self.runtime
        pools = runtime.market.pools
        if pools is None or pools.head is None:
            return 0
        gas = await runtime.current_gas()
        if gas is None:
            self.feed.invalidate()  # nothing scanned: the next tick must cover everything
            return 0
        scope = self.feed.take()
        block = pools.head[0]
        states = PoolStates(pools)
        if runtime.scan_process is not None:
            infos = pools.infos()
            request = build_request(
                self.terms,
                infos=infos,
                states=states,
                scope=scope,
                shipped_pools=0 if scope is None else self._indexed,
                block_number=block,
                gas=gas,
                detected_at=utc_now_iso(),
            )
            try:
                found, ms = await runtime.scan_process.scan(request)
            except BaseException:
                self.feed.invalidate()  # the worker's copy may be behind now: ship it all again
                raise
            self._indexed = len(infos)
        else:
            if len(pools) != self._indexed:
                self.scanner.add_pools(pools.infos())
                self._indexed = len(pools)
            started = time.perf_counter()
            found = self.scanner.scan(
                states,
                block_number=block,
                gas=gas,
                detected_at=utc_now_iso(),
                changed=scope,
                blocked_tokens=runtime.blocked_tokens(),
            )
            ms = (time.perf_counter() - started) * 1000.0
        runtime.scan_times.add(ms, scope is None)
        # the scan process is not told the blocklist; the inline scanner already skipped tokens
        found = runtime.with_token_units(runtime.not_blocked(found))
        changes = runtime.book.update(found, None if scope is None else {a.lower() for a in scope})
        await runtime.emit(changes, block)
        runtime.last_scanned = (block, tick.received_at)
        return len(found)


# -- the runtime ------------------------------------------------------------------------------


class ChainRuntime:
    """One configured chain, running: see the module docstring."""

    def __init__(
        self,
        config: ChainConfig,
        *,
        publish: Publisher | None = None,
        store: Store | None = None,
        retention: Retention | None = None,
        inbox_size: int = 4,
        scan_process: ScanProcess | None = None,
    ) -> None:
        self.config = config
        self.scan_process = scan_process
        self.name = config.name
        self._publish = publish
        self.store = store
        self.retention = retention or Retention()
        self.services = ChainServices(config, publish)
        self.market = Market(config, self.services.pool)
        self.consumer = self.services.heads.register(self.market.log_filter())
        self.book = OpportunityBook()
        # live backruns by id, kept by the backrun agent: what an execute request can take
        self.backruns: dict[str, Opportunity] = {}
        self.scan_times = ScanTimes()
        self.last_scanned: tuple[int, float] | None = None
        self.published = 0
        self.skipped_strategies: list[str] = []
        self.agents: list[Agent[Any]] = []
        self.mempool: MempoolPoller | None = None
        for strategy in config.active_strategies:
            if strategy not in WIRED_STRATEGIES:
                self.skipped_strategies.append(strategy)
                continue
            if strategy == "backrun":
                self.agents.append(self._backrun_agent(publish))
                continue
            feed = self.market.feed()
            self.agents.append(
                Agent(
                    strategy=strategy,
                    chain=config.name,
                    factory=lambda feed=feed: ArbitrageWorker(self, feed),  # type: ignore[misc]
                    publish=publish,
                    inbox_size=inbox_size,
                    position=lambda tick: tick.block_number,
                )
            )
        self._scans_since_prune = 0
        self._pump: asyncio.Task[None] | None = None
        # wired by the engine: the trading state's blocklist (lower-case addresses), listeners of
        # published opportunity changes (auto-execution), and hooks that must see each block's
        # logs with the market still in the state before that block (the exploit watch)
        self.blocked_tokens: Callable[[], frozenset[str]] = frozenset
        self.blocked_pools: Callable[[], frozenset[str]] = frozenset
        self.opportunity_listeners: list[Callable[[list[Opportunity]], None]] = []
        self.before_block: list[Callable[[StreamItem, PoolStore], Awaitable[None]]] = []
        # token metadata never changes once read, so a hit is kept for the runtime's life
        self._token_meta: dict[str, TokenMeta] = {}

    def _backrun_agent(self, publish: Publisher | None) -> Agent[MempoolTick]:
        pending = PendingFeed()
        changes = self.market.feed()
        interval = min(0.25, self.config.block_time / 4)
        self.mempool = MempoolPoller(
            self.name, self.services.pool, pending, interval, ws=self.services.ws
        )
        agent: Agent[MempoolTick] = Agent(
            strategy="backrun",
            chain=self.name,
            factory=lambda: BackrunWorker(self, changes, pending),
            publish=publish,
            inbox_size=8,
        )
        self.mempool.listeners.append(agent)
        return agent

    def register(self, supervisor: AgentSupervisor) -> None:
        for agent in self.agents:
            supervisor.add(agent)

    async def start(self) -> ChainRuntime:
        if self.skipped_strategies:
            log.warning(
                "chain %s: strategies %s are not wired into the engine yet; not running them",
                self.name,
                ", ".join(self.skipped_strategies),
            )
        await self.services.start()
        self._pump = asyncio.create_task(self._run(), name=f"market-{self.name}")
        if self.mempool is not None:
            self.mempool.start()
        return self

    async def aclose(self) -> None:
        if self.mempool is not None:
            await self.mempool.aclose()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        await self.services.aclose()

    async def _run(self) -> None:
        while True:
            item = await self.consumer.get()
            received = time.monotonic()
            pools = self.market.pools
            if pools is not None and not isinstance(item, Rollback):
                for hook in self.before_block:
                    try:
                        await hook(item, pools)
                    except Exception:
                        log.exception("chain %s: block hook failed", self.name)
            try:
                block = await self.market.apply(item)
            except RpcError as exc:
                # The market cannot follow this block; start over from the next one rather than
                # scan a state that misses it.
                log.warning("chain %s: market update failed (%s); rebuilding", self.name, exc)
                self.market.pools = None
                continue
            except Exception:
                log.exception("chain %s: market update failed; rebuilding", self.name)
                self.market.pools = None
                continue
            if block is not None:
                for agent in self.agents:
                    if agent.strategy == "arbitrage":
                        agent.offer(MarketTick(block, received))
                if self.mempool is not None:
                    self.mempool.on_head()

    async def current_gas(self) -> GasInputs | None:
        quote = self.services.gas.last
        if quote is None:
            try:
                quote = await self.services.gas.quote()
            except RpcError as exc:
                log.warning("chain %s: no gas quote yet: %s", self.name, exc)
                return None
        return gas_inputs(quote)

    async def emit(self, changes: list[Opportunity], block: int) -> None:
        """Publish and store each change; apply the retention policy now and then."""
        # a strategy without its own blocklist check (backrun) must not publish blocked paths
        changes = [
            *self.not_blocked([o for o in changes if o.status != "expired"]),
            *(o for o in changes if o.status == "expired"),
        ]
        if self.store is not None and changes:
            executed = await asyncio.to_thread(self._executed, [o.id for o in changes])
            if executed:
                # an executed episode follows its trade: it is not expired here, and a sighting
                # of its path that is still there is a new opportunity with an id of its own
                # (a backrun's id names its trigger: seen again, it is the same one, not new)
                changes = [
                    self.book.renew(o) if o.id in executed else o
                    for o in changes
                    if o.id not in executed or (o.status != "expired" and self.book.knows(o.id))
                ]
        changes = self.with_token_units(changes)
        docs = [o.to_json() for o in changes]
        for listener in self.opportunity_listeners:
            listener(changes)
        # Events first: the store write (a commit, an fsync on SQLite) would otherwise sit in the
        # block-to-opportunity latency; it follows within milliseconds.
        if self._publish is not None:
            for doc in docs:
                await self._publish(EventName.MEV_OPPORTUNITY, self.name, doc)
        if self.store is not None and docs:
            await asyncio.to_thread(self.store.upsert_opportunities, docs)
        self.published += len(docs)
        self._scans_since_prune += 1
        if self.store is not None and self._scans_since_prune >= self.retention.every_blocks:
            self._scans_since_prune = 0
            await asyncio.to_thread(
                self.store.prune_opportunities,
                keep_per_chain=self.retention.keep_per_chain,
                older_than=datetime.now(UTC) - self.retention.max_age,
            )

    def _executed(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the store shows executed (their status follows their trade)."""
        assert self.store is not None
        out: set[str] = set()
        for ident in ids:
            stored = self.store.get_opportunity(ident)
            if stored is not None and stored.get("status") in EXECUTED_STATUSES:
                out.add(ident)
        return out

    def with_token_units(self, found: Sequence[Opportunity]) -> list[Opportunity]:
        """``found`` with its start token's symbol and decimals wherever the market has read
        them (the registry reads each token once); unknown tokens stay in base units."""
        out: list[Opportunity] = []
        for opportunity in found:
            meta = None if opportunity.token_decimals is not None else self.token(opportunity.token)
            if meta is not None:
                opportunity = replace(
                    opportunity, token_symbol=meta.symbol or None, token_decimals=meta.decimals
                )
            out.append(opportunity)
        return out

    def token(self, address: str) -> TokenMeta | None:
        key = address.lower()
        meta = self._token_meta.get(key)
        if meta is None:
            meta = self.market.registry.tokens.get_token(self.config.chain_id, address)
            if meta is not None:
                self._token_meta[key] = meta
        return meta

    def not_blocked(self, found: list[Opportunity]) -> list[Opportunity]:
        """``found`` without the opportunities through a blocklisted token or pool."""
        tokens, pools = self.blocked_tokens(), self.blocked_pools()
        if not tokens and not pools:
            return found
        return [
            o
            for o in found
            if not any(
                h.pool.lower() in pools
                or h.token_in.lower() in tokens
                or h.token_out.lower() in tokens
                for h in o.path
            )
        ]

    async def withdraw(self, addresses: set[str]) -> list[Opportunity]:
        """Expire at once every live opportunity whose path touches ``addresses`` (lower case)."""
        gone: list[Opportunity] = []
        for ident, opportunity in list(self.book.active.items()):
            touched = opportunity.token.lower() in addresses or any(
                {h.pool.lower(), h.token_in.lower(), h.token_out.lower()} & addresses
                for h in opportunity.path
            )
            if touched:
                self.book.end(ident)
                gone.append(opportunity.with_status("expired"))
        if gone:
            pools = self.market.pools
            head = None if pools is None or pools.head is None else pools.head[0]
            await self.emit(gone, head or 0)
        return gone

    def status(self) -> dict[str, Any]:
        pools = self.market.pools
        head = None if pools is None or pools.head is None else pools.head[0]
        return {
            "chain": self.name,
            "chain_id": self.config.chain_id,
            "market_block": head,
            "pools": 0 if pools is None else len(pools),
            "market_builds": self.market.builds,
            "last_build_s": round(self.market.last_build_s, 3),
            "stream_lag": self.consumer.lag,
            "blocks_delivered": self.services.heads.delivered,
            "reorgs": self.services.heads.reorgs,
            "active_opportunities": len(self.book.active),
            "opportunity_events": self.published,
            "scan": self.scan_times.to_json(),
            "strategies_not_running": list(self.skipped_strategies),
        }
