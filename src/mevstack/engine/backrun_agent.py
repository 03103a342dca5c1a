"""The backrun agent of one chain: pending swaps from the node's mempool → backrun opportunities.

:class:`MempoolPoller` reads ``txpool_content`` on a short cadence (every node that has a public
mempool worth backrunning answers it, anvil included) and hands the worker what is new through a
:class:`PendingFeed` — like the market's change feed, it accumulates, so a coalesced tick loses
no transaction — together with the latest set of pending hashes.

:class:`BackrunWorker` (one per agent start) keeps the strategy team's :class:`BackrunSearch` in
step with the market (pools indexed, changed pools marked at each head), learns which routers
belong to the configured DEXes (one ``factory()`` call per unknown ``to``, cached), searches each
new pending swap on the head state, and publishes the backruns through the runtime (event +
store).  A trigger that leaves the mempool (mined, dropped, replaced) withdraws its backruns: they
are published again as ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.events import utc_now_iso
from mevstack.strategy.arbitrage import ChainTerms
from mevstack.strategy.backrun import (
    ROUTER_FACTORY_SIGNATURE,
    BackrunBook,
    BackrunSearch,
    Venues,
    Withdrawal,
    learn_router,
)
from mevstack.strategy.mempool import decode_transaction, selector
from mevstack.strategy.opportunity import Opportunity

if TYPE_CHECKING:
    from mevstack.engine.chain_runtime import ChainRuntime, ChangeFeed

log = logging.getLogger(__name__)

_FACTORY_CALL = "0x" + selector(ROUTER_FACTORY_SIGNATURE).hex()
MAX_TRIGGERS = 2_000  # pending swaps kept for re-sizing at the next head (the rest: once)


@dataclass(frozen=True, slots=True)
class MempoolTick:
    """What the backrun agent receives: the mempool was read again."""

    read: int  # how many reads of the mempool so far


@dataclass
class PendingFeed:
    """Transactions seen since the worker last looked, and the latest pending set."""

    new: dict[str, dict[str, Any]] = field(default_factory=dict)  # hash (lower) -> tx
    pending: frozenset[str] = frozenset()
    reads: int = 0

    def take(self) -> tuple[list[dict[str, Any]], frozenset[str]]:
        txs, self.new = list(self.new.values()), {}
        return txs, self.pending


def pending_transactions(content: Any) -> list[dict[str, Any]]:
    """The pending transactions of a ``txpool_content`` answer (queued ones cannot be mined)."""
    if not isinstance(content, dict):
        return []
    out: list[dict[str, Any]] = []
    for by_nonce in (content.get("pending") or {}).values():
        if isinstance(by_nonce, dict):
            out.extend(tx for tx in by_nonce.values() if isinstance(tx, dict) and "hash" in tx)
    return out


class MempoolPoller:
    """Reads the mempool every ``interval`` seconds into a PendingFeed; ticks the agents."""

    def __init__(self, chain: str, rpc: JsonRpc, feed: PendingFeed, interval: float) -> None:
        self.chain = chain
        self.rpc = rpc
        self.feed = feed
        self.interval = interval
        self.listeners: list[Any] = []  # agents: anything with offer(MempoolTick)
        self._seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mempool-{self.chain}")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def read_once(self) -> None:
        txs = pending_transactions(await self.rpc.request("txpool_content", []))
        hashes = frozenset(str(tx["hash"]).lower() for tx in txs)
        for tx in txs:
            key = str(tx["hash"]).lower()
            if key not in self._seen:
                self.feed.new[key] = tx
        self._seen = set(hashes)
        changed = bool(self.feed.new) or hashes != self.feed.pending
        self.feed.pending = hashes
        self.feed.reads += 1
        if changed:
            for agent in self.listeners:
                agent.offer(MempoolTick(self.feed.reads))

    async def _run(self) -> None:
        while True:
            try:
                await self.read_once()
            except RpcError as exc:
                log.warning("chain %s: mempool read failed: %s", self.chain, exc)
            await asyncio.sleep(self.interval)  # the polling cadence of the mempool


class BackrunWorker:
    """Searches backruns for each new pending swap; see the module docstring."""

    def __init__(self, runtime: ChainRuntime, changes: ChangeFeed, pending: PendingFeed) -> None:
        self.runtime = runtime
        self.changes = changes
        self.changes.invalidate()
        self.pending = pending
        config = runtime.config
        self.search = BackrunSearch(ChainTerms.from_config(config), Venues(config.wrapped_native))
        self.book = BackrunBook()
        self.active: dict[str, Opportunity] = {}
        self.triggers: dict[str, dict[str, Any]] = {}  # pending swaps (hash -> tx) to re-size
        self._routers: set[str] = set()  # every `to` already asked for its factory
        self._indexed = 0

    async def handle(self, tick: MempoolTick) -> int:
        from mevstack.engine.chain_runtime import PoolStates  # the runtime imports this module

        runtime = self.runtime
        pools = runtime.market.pools
        header = runtime.services.heads.tracker.last
        if pools is None or pools.head is None or header is None:
            return 0
        if len(pools) != self._indexed:
            self.search.add_pools(pools.infos())
            self._indexed = len(pools)
        moved = self.changes.take()
        self.search.on_block(moved)
        txs, pending = self.pending.take()
        withdrawn = self._withdraw(self.book.retain(pending))
        self.triggers = {h: tx for h, tx in self.triggers.items() if h in pending}
        if moved is None or moved:
            # The head moved: backruns of triggers still pending are re-sized on the new state.
            txs = [*self.triggers.values(), *txs]
        gas = await runtime.current_gas()
        found: list[Opportunity] = []
        if gas is not None:
            await self._learn_routers(tx.get("to") for tx in txs)
            block = pools.head[0]
            timestamp = header.timestamp + max(1, round(runtime.config.block_time))
            states = PoolStates(pools)
            for tx in {str(t["hash"]).lower(): t for t in txs}.values():
                swap = decode_transaction(tx)
                if swap is None:
                    continue
                result = self.search.search(
                    swap,
                    states,
                    block_number=block,
                    timestamp=timestamp,
                    gas=gas,
                    detected_at=utc_now_iso(),
                )
                best = result.opportunities[:1]  # one backrun per trigger: they all compete
                if result.effect is not None and len(self.triggers) < MAX_TRIGGERS:
                    self.triggers[swap.tx_hash.lower()] = tx
                withdrawn += self._withdraw(
                    self.book.track(swap.sender, swap.nonce, swap.tx_hash, [o.id for o in best])
                )
                for opportunity in best:
                    old = self.active.get(opportunity.id)
                    self.active[opportunity.id] = opportunity
                    if old is None or old.amount_in != opportunity.amount_in:
                        found.append(opportunity)
        await runtime.emit([*found, *withdrawn], pools.head[0])
        return len(found)

    def _withdraw(self, withdrawals: Iterable[Withdrawal]) -> list[Opportunity]:
        out: list[Opportunity] = []
        for withdrawal in withdrawals:
            for ident in withdrawal.opportunity_ids:
                gone = self.active.pop(ident, None)
                if gone is not None:
                    out.append(gone.with_status("expired"))
        return out

    async def _learn_routers(self, targets: Iterable[Any]) -> None:
        rpc = self.runtime.services.pool
        for target in targets:
            if not isinstance(target, str):
                continue
            key = target.lower()
            if key in self._routers or self.search.directory.key(target) is not None:
                continue
            self._routers.add(key)
            try:
                answer = await rpc.request(
                    "eth_call", [{"to": target, "data": _FACTORY_CALL}, "latest"]
                )
            except RpcError:
                continue  # not a router (no factory()): nothing to learn
            if isinstance(answer, str) and len(answer) >= 66:
                factory = "0x" + answer[-40:]
                self.search.venues = learn_router(
                    self.search.venues, target, factory, self.runtime.config.dexes
                )
