"""The backrun agent of one chain: pending swaps from the node's mempool → backrun opportunities.

:class:`MempoolPoller` feeds the worker through a :class:`PendingFeed` — like the market's change
feed, it accumulates, so a coalesced tick loses no transaction.  Two sources fill it:

* **A subscription**, when the chain has a WebSocket: ``newPendingTransactions`` asking for whole
  transaction objects (geth, reth and anvil send them); a node that refuses the flag is asked for
  hashes, and hashes are turned into transactions by one batched ``eth_getTransactionByHash``.
  A subscription gives no "current pending set", so the worker asks the node about the triggers it
  tracks each time the head moves (see below).  After ``RESUBSCRIBED`` (notifications were lost
  while no socket was up) the mempool is read once to catch up.
* **Polling** ``txpool_content`` on a short cadence (every node with a public mempool worth
  backrunning answers it, anvil included): the only source without a WebSocket, and the fallback
  while no socket serves the subscription.  Each read also gives a *snapshot* of the pending
  hashes.  When the subscription starts serving, one more read covers what arrived between the
  last poll and the subscription.

:class:`BackrunWorker` (one per agent start) keeps the strategy's :class:`BackrunSearch` in
step with the market (pools indexed, changed pools marked at each head), learns which routers
belong to the configured DEXes (one ``factory()`` call per unknown ``to``, cached), searches each
new pending swap on the head state, and publishes the backruns through the runtime (event +
store).  A trigger that leaves the mempool (mined, dropped, replaced) withdraws its backruns: they
are published again as ``expired``.  It learns that from a poll snapshot when one came since it
last looked; otherwise, once per new head, from one batched ``eth_getTransactionByHash`` over the
triggers it tracks (mined: a ``blockNumber``; dropped or replaced: the node no longer knows the
hash; a replacement that is itself a swap withdraws the old trigger at once, by sender and nonce).

Each backrun is priced behind the pending swaps the next block will hold before its trigger
(``strategy.backrun.block_order``): the worker keeps the pending swaps it tracks with the order it
first saw them in, and orders them at the expected next base fee by the node's rule (anvil ranks
by fee cap, other nodes by effective tip; told by ``web3_clientVersion``, asked once), and,
unless the route is a bundle (which lands the backrun right behind its trigger), also behind
those the node puts between the trigger and the backrun (``strategy.backrun.between_of``): the
backrun is ranked with the fees the pipeline will give it (at most its trigger's) and is seen
after every pending swap, so all those ranked level with it or above come first.  A swap that
arrives or leaves between heads re-prices the tracked triggers that share a pool with it or with
their backrun's path (the execution refuses a backrun whose latest pricing puts a transaction in
front of it that its own did not); at a new head every tracked trigger is re-priced anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.chain.ws import RESUBSCRIBED, Subscription, WsClient
from mevstack.engine.execution_runtime import DEFAULT_PRIORITY_FEE_WEI
from mevstack.events import utc_now_iso
from mevstack.execution.trigger import planned_backrun_fees
from mevstack.strategy.arbitrage import ChainTerms
from mevstack.strategy.backrun import (
    ROUTER_FACTORY_SIGNATURE,
    BackrunBook,
    BackrunSearch,
    OrderRule,
    Venues,
    Withdrawal,
    between_of,
    block_order,
    learn_router,
    order_price,
    price_floor,
)
from mevstack.strategy.mempool import PendingSwap, decode_transaction, selector
from mevstack.strategy.opportunity import Opportunity

if TYPE_CHECKING:
    from mevstack.engine.chain_runtime import ChainRuntime, ChangeFeed

log = logging.getLogger(__name__)

_FACTORY_CALL = "0x" + selector(ROUTER_FACTORY_SIGNATURE).hex()
MAX_TRIGGERS = 2_000  # pending swaps kept for re-sizing at the next head (the rest: once)
_NOTIFICATION_BATCH = 512  # notifications handled (and hashes looked up) per round


@dataclass(frozen=True, slots=True)
class MempoolTick:
    """What the backrun agent receives: the feed has something new (or the head moved)."""

    read: int  # how many times the feed was fed so far


@dataclass
class PendingFeed:
    """Transactions seen since the worker last looked, and the latest snapshot of pending hashes.

    ``pending`` is a whole-mempool snapshot from a poll, given to the worker once (``None`` when
    no read happened since it last looked: pushed transactions carry no snapshot).  Hashes pushed
    while a read is in flight are added to its snapshot: the read may predate them.
    """

    new: dict[str, dict[str, Any]] = field(default_factory=dict)  # hash (lower) -> tx
    pending: frozenset[str] | None = None
    reads: int = 0  # polls of the whole mempool
    pushed: int = 0  # transactions received from the subscription
    _during_read: set[str] | None = None

    def add(self, tx: dict[str, Any]) -> None:
        key = str(tx["hash"]).lower()
        self.new[key] = tx
        if self._during_read is not None:
            self._during_read.add(key)

    def begin_read(self) -> None:
        self._during_read = set()

    def abort_read(self) -> None:
        self._during_read = None

    def end_read(self, hashes: frozenset[str]) -> None:
        self.pending = hashes | (self._during_read or set())
        self._during_read = None
        self.reads += 1

    def take(self) -> tuple[list[dict[str, Any]], frozenset[str] | None]:
        txs, self.new = list(self.new.values()), {}
        snapshot, self.pending = self.pending, None
        return txs, snapshot


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
    """Fills a PendingFeed from the subscription when one serves, else by polling every
    ``interval`` seconds; ticks the agents (see the module docstring)."""

    def __init__(
        self,
        chain: str,
        rpc: JsonRpc,
        feed: PendingFeed,
        interval: float,
        ws: WsClient | None = None,
        *,
        full_objects: bool = True,
    ) -> None:
        self.chain = chain
        self.rpc = rpc
        self.feed = feed
        self.interval = interval
        self.ws = ws
        self.listeners: list[Any] = []  # agents: anything with offer(MempoolTick)
        self.subscription: Subscription | None = None
        self.full_objects = full_objects  # whole transactions asked for (else hashes)
        self.catch_ups = 0  # reads done because notifications may have been lost
        # A read is owed while _done < _wanted: one at start, and one whenever notifications
        # may have been missed; a read only pays what was owed when it started.
        self._wanted = 1
        self._done = 0
        self._first_link = False  # the first link's subscription was seen serving
        self._seen: set[str] = set()
        self._last_snapshot: frozenset[str] = frozenset()
        self._ticks = 0
        self._lock = asyncio.Lock()
        self._asked = asyncio.Event()  # the subscription was asked for (or refused)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def subscribed(self) -> bool:
        """True while a socket serves the pending-transaction subscription."""
        sub, ws = self.subscription, self.ws
        return (
            sub is not None
            and ws is not None
            and ws.connected.is_set()
            and sub.server_id is not None
        )

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._run(), name=f"mempool-{self.chain}"))
        if self.ws is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name=f"mempool-ws-{self.chain}"))

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.subscription is not None and self.ws is not None:
            with contextlib.suppress(RpcError):
                await self.ws.unsubscribe(self.subscription)
            self.subscription = None

    def on_head(self) -> None:
        """The market moved to a new block: with a subscription, the worker must look again
        (nothing else tells it that a trigger was mined)."""
        if self.subscribed:
            self._tick()

    def _tick(self) -> None:
        self._ticks += 1
        for agent in self.listeners:
            agent.offer(MempoolTick(self._ticks))

    @property
    def caught_up(self) -> bool:
        """No read is owed (with a subscription: nothing may have been missed)."""
        return self._done >= self._wanted

    async def read_once(self) -> None:
        async with self._lock:
            want = self._wanted
            self.feed.begin_read()
            try:
                txs = pending_transactions(await self.rpc.request("txpool_content", []))
            except BaseException:
                self.feed.abort_read()
                raise
            hashes = frozenset(str(tx["hash"]).lower() for tx in txs)
            for tx in txs:
                if str(tx["hash"]).lower() not in self._seen:
                    self.feed.add(tx)
            self._seen = set(hashes)
            self._done = max(self._done, want)
            changed = bool(self.feed.new) or hashes != self._last_snapshot
            self._last_snapshot = hashes
            self.feed.end_read(hashes)
        if changed:
            self._tick()

    async def _run(self) -> None:
        if self.ws is not None:
            # Read the mempool once the subscription serves (normally within milliseconds),
            # rather than poll a node that is about to push.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ws.timeout):
                    await self._asked.wait()
                    await self.ws.connected.wait()
        while True:
            live = self.subscribed
            if live and not self._first_link:
                # What reached the mempool between the last poll and the first subscription
                # (every later link brings a RESUBSCRIBED marker, which owes a read itself).
                self._first_link = True
                self._wanted += 1
            if not live or not self.caught_up:
                try:
                    await self.read_once()
                except RpcError as exc:
                    log.warning("chain %s: mempool read failed: %s", self.chain, exc)
            await asyncio.sleep(self.interval)  # the polling cadence of the mempool

    # -- the subscription ----------------------------------------------------------------------

    async def _subscribe(self, ws: WsClient) -> Subscription:
        if not self.full_objects:
            return await ws.subscribe("newPendingTransactions")
        try:
            # The flag is a bare ``true``; the client's typed params only allow a filter object.
            return await ws.subscribe("newPendingTransactions", True)
        except RpcError as exc:
            log.info(
                "chain %s: node refuses full pending transactions (%s); subscribing to hashes",
                self.chain,
                exc,
            )
        self.full_objects = False
        return await ws.subscribe("newPendingTransactions")

    async def _listen(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            self.subscription = sub = await self._subscribe(ws)
        except RpcError as exc:
            log.warning(
                "chain %s: no pending-transaction subscription (%s); polling", self.chain, exc
            )
            return
        finally:
            self._asked.set()
        while True:
            items = [await sub.get()]
            while len(items) < _NOTIFICATION_BATCH and not sub.queue.empty():
                items.append(sub.queue.get_nowait())
            try:
                await self._take_notifications(items)
            except RpcError as exc:
                # Hashes whose transactions could not be read are caught up by a read.
                log.warning("chain %s: pending transactions lookup failed: %s", self.chain, exc)
                await self._catch_up()

    async def _take_notifications(self, items: list[Any]) -> None:
        catch_up = False
        txs: list[dict[str, Any]] = []
        hashes: list[str] = []
        for item in items:
            if item is RESUBSCRIBED:
                catch_up = True
            elif isinstance(item, dict) and isinstance(item.get("hash"), str):
                txs.append(item)
            elif isinstance(item, str):
                hashes.append(item)
        if hashes:
            answers = await self.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
            # None: already gone (mined or dropped) before we asked; nothing to backrun then.
            txs += [a for a in answers if isinstance(a, dict) and a.get("blockNumber") is None]
        for tx in txs:
            if "hash" in tx:
                self.feed.add(tx)
        self.feed.pushed += len(txs)
        if txs:
            self._tick()
        if catch_up:
            await self._catch_up()

    async def _catch_up(self) -> None:
        self.catch_ups += 1
        self._wanted += 1  # owed until a read succeeds; the polling loop retries it
        try:
            await self.read_once()
        except RpcError as exc:
            log.warning("chain %s: mempool catch-up read failed: %s", self.chain, exc)


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
        # the runtime's dict (execute requests look there); a restarted agent starts afresh
        self.active: dict[str, Opportunity] = runtime.backruns
        self.active.clear()
        self.triggers: dict[str, dict[str, Any]] = {}  # pending swaps (hash -> tx) to re-size
        self._routers: set[str] = set()  # every `to` already asked for its factory
        self._indexed = 0
        self._checked_head: int | None = None  # head at which tracked triggers were last known
        self._slots: dict[tuple[str, int], str] = {}  # (sender, nonce) of triggers -> hash
        self._decoded: dict[str, PendingSwap] = {}  # tracked triggers, decoded
        self._arrival: dict[str, int] = {}  # hash -> when first seen (a counter)
        self._arrivals = 0
        self.order_rule: OrderRule | None = None  # how the node orders a block; asked once

    def _seen(self, swap: PendingSwap) -> int:
        key = swap.tx_hash.lower()
        if key not in self._arrival:
            self._arrival[key] = self._arrivals
            self._arrivals += 1
        return self._arrival[key]

    def _forget(self, hashes: Iterable[str]) -> set[str]:
        """Stop tracking these triggers; the pools they named (whose backruns they priced)."""
        pools: set[str] = set()
        for h in hashes:
            self.triggers.pop(h, None)
            swap = self._decoded.pop(h, None)
            self._arrival.pop(h, None)
            if swap is not None:
                pools |= self.search.pools_of(swap)
        return pools

    async def _order_rule(self) -> OrderRule:
        if self.order_rule is None:
            try:
                version = await self.runtime.services.pool.request("web3_clientVersion", [])
            except RpcError as exc:
                log.warning("chain %s: web3_clientVersion failed: %s", self.runtime.name, exc)
                return "effective_tip"  # asked again next time
            # anvil's pool ranks by fee cap (its "fees" order, measured); geth and reth's miners
            # by the effective tip
            anvil = str(version).lower().startswith("anvil")
            self.order_rule = "fee_cap" if anvil else "effective_tip"
        return self.order_rule

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
        if pending is None and pools.head[0] != self._checked_head:
            pending = await self._still_pending()
        withdrawn: list[Opportunity] = []
        moved_pools: set[str] = set()  # pools of swaps that arrived or left: their re-pricing
        if pending is not None:
            self._checked_head = pools.head[0]
            withdrawn = self._withdraw(self.book.retain(pending))
            moved_pools |= self._forget([h for h in self.triggers if h not in pending])
            self._slots = {k: h for k, h in self._slots.items() if h in self.book}
        replaced, left = self._replaced(txs)
        withdrawn += replaced
        moved_pools |= self._forget(left)
        fresh = [
            (tx, swap)
            for tx in {str(t["hash"]).lower(): t for t in txs}.values()
            if (swap := decode_transaction(tx)) is not None
        ]
        for _tx, swap in fresh:
            self._seen(swap)
        gas = await runtime.current_gas()
        found: list[Opportunity] = []
        if gas is not None:
            await self._learn_routers(tx.get("to") for tx, _swap in fresh)
            for _tx, swap in fresh:
                moved_pools |= self.search.pools_of(swap)
            fresh_hashes = {swap.tx_hash.lower() for _tx, swap in fresh}
            if moved is None or moved:
                # The head moved: backruns of triggers still pending are re-sized on the new state.
                again = [h for h in self.triggers if h not in fresh_hashes]
            else:
                # Between heads: a swap that came or went re-prices the triggers sharing a pool
                # with it or with their backrun's path.
                again = [
                    h
                    for h, swap in self._decoded.items()
                    if h not in fresh_hashes and not moved_pools.isdisjoint(self._interest(h, swap))
                ]
            todo = [(self.triggers[h], self._decoded[h]) for h in again if h in self._decoded]
            todo += fresh
            # every pending swap known, first seen first, in the order the next block holds them
            known = {**self._decoded, **{swap.tx_hash.lower(): swap for _tx, swap in fresh}}
            arrived = sorted(known.values(), key=self._seen)
            quote = runtime.services.gas.last
            base_fee = 0
            if quote is not None:
                base_fee = quote.next_base_fee_wei or quote.base_fee_wei or 0
            rule = await self._order_rule()
            ordered = block_order(arrived, base_fee=base_fee, rule=rule)
            place = {swap.tx_hash.lower(): i for i, swap in enumerate(ordered)}
            # A bundle lands the backrun right behind its trigger; otherwise the node ranks it
            # among the pending transactions, with the fees the pipeline will give it (the tip
            # it offers is the execution's: the gas oracle's median).
            floor = None
            if runtime.config.route != "bundle":
                floor = price_floor(ordered, base_fee=base_fee, rule=rule)
            tip = DEFAULT_PRIORITY_FEE_WEI if quote is None else max(quote.priority_fee_p50, 1)
            block = pools.head[0]
            timestamp = header.timestamp + max(1, round(runtime.config.block_time))
            states = PoolStates(pools)
            for tx, swap in todo:
                key = swap.tx_hash.lower()
                at = place.get(key)
                between: list[PendingSwap] = []
                if at is not None and floor is not None:
                    cap, priority = planned_backrun_fees(
                        swap.max_fee_per_gas,
                        swap.max_priority_fee_per_gas,
                        base_fee=base_fee,
                        tip=tip,
                    )
                    ours = replace(swap, max_fee_per_gas=cap, max_priority_fee_per_gas=priority)
                    price = order_price(ours, base_fee=base_fee, rule=rule)
                    between = between_of(ordered, floor, at, price)
                result = self.search.search(
                    swap,
                    states,
                    block_number=block,
                    timestamp=timestamp,
                    gas=gas,
                    detected_at=utc_now_iso(),
                    ahead=[] if at is None else ordered[:at],
                    between=between,
                )
                best = result.opportunities[:1]  # one backrun per trigger: they all compete
                if result.effect is not None and (
                    key in self.triggers or len(self.triggers) < MAX_TRIGGERS
                ):
                    self.triggers[key] = tx
                    self._decoded[key] = swap
                withdrawn += self._withdraw(
                    self.book.track(swap.sender, swap.nonce, swap.tx_hash, [o.id for o in best])
                )
                self._slots[(swap.sender.lower(), swap.nonce)] = key
                for opportunity in best:
                    old = self.active.get(opportunity.id)
                    self.active[opportunity.id] = opportunity
                    if (
                        old is None
                        or old.amount_in != opportunity.amount_in
                        or old.amount_out != opportunity.amount_out
                        or old.ahead_txs != opportunity.ahead_txs
                        or old.between_txs != opportunity.between_txs
                    ):
                        found.append(opportunity)
        # only tracked swaps can be ahead of a later trigger: forget when the others came
        self._arrival = {h: n for h, n in self._arrival.items() if h in self._decoded}
        await runtime.emit([*found, *withdrawn], pools.head[0])
        return len(found)

    def _interest(self, tx_hash: str, swap: PendingSwap) -> set[str]:
        """The pools whose pending swaps change a trigger's backruns: its own and those of the
        paths of its published backruns (lower-case)."""
        pools = set(self.search.pools_of(swap))
        for ident in self.book.opportunities(tx_hash):
            published = self.active.get(ident)
            if published is not None:
                pools.update(hop.pool.lower() for hop in published.path)
        return pools

    def _replaced(self, txs: Iterable[dict[str, Any]]) -> tuple[list[Opportunity], list[str]]:
        """Withdraw the triggers that a new transaction replaces (same sender and nonce), swap
        or not: a cancellation is a plain transfer the search never looks at.  Returns the
        withdrawn backruns and the replaced hashes."""
        out: list[Opportunity] = []
        left: list[str] = []
        for tx in txs:
            try:
                slot = (str(tx["from"]).lower(), int(str(tx["nonce"]), 0))
            except (KeyError, ValueError):
                continue
            old = self._slots.get(slot)
            if old is None or old == str(tx["hash"]).lower():
                continue
            del self._slots[slot]
            left.append(old)
            out += self._withdraw(self.book.dropped(old))
        return out, left

    async def _still_pending(self) -> frozenset[str] | None:
        """Which tracked triggers the node still has pending (None: it could not say).

        Asked only about triggers that matter: those re-sized at each head and those with a
        published backrun; any other swap the book tracks is forgotten, it has nothing to withdraw.
        """
        watched = set(self.triggers)
        watched.update(o.trigger_tx.lower() for o in self.active.values() if o.trigger_tx)
        if not watched:
            return frozenset()
        hashes = sorted(watched)
        try:
            answers = await self.runtime.services.pool.batch(
                [("eth_getTransactionByHash", [h]) for h in hashes]
            )
        except RpcError as exc:
            log.warning("chain %s: pending triggers check failed: %s", self.runtime.name, exc)
            return None
        # Mined: it has a block.  Dropped or replaced: the node no longer knows the hash.  An
        # answer that is an error says nothing: the trigger is kept until the next head.
        return frozenset(
            h
            for h, answer in zip(hashes, answers, strict=True)
            if isinstance(answer, RpcError)
            or (isinstance(answer, dict) and answer.get("blockNumber") is None)
        )

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
