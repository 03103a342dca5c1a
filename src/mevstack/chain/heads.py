"""The head and log stream of one chain: every block exactly once, in order, with its logs.

Owns the canonical view of recent blocks and what consumers receive.  The pure part,
:class:`ChainTracker`, holds the last ``depth`` delivered headers and knows nothing of I/O; the
:class:`HeadStream` around it reads through any :class:`mevstack.chain.rpc.JsonRpc` (normally the
chain's :class:`EndpointPool`) and is woken by WebSocket ``newHeads`` notifications or, without a
WebSocket, by polling.  A wake-up is only a hint: each sync reads the latest head and walks from
the last delivered block to it, which is also how gaps after a reconnect or a failover are
backfilled.

* Logs are fetched with ``eth_getLogs`` by ``blockHash``: a node that has not seen a block answers
  a by-number query with ``[]`` (indistinguishable from "no logs"), but a by-hash query with an
  error, so a block is delivered only once its logs are really known.
* A reorg is detected by parent-hash mismatch (anvil's ``anvil_reorg`` sends no ``removed`` logs),
  or by the latest head at an already-delivered height having another hash.  Consumers then get
  ``Rollback(to_block=common_ancestor)`` followed by the new blocks.
* Consumer queues are bounded; a slow consumer slows the stream (back-pressure), nothing is
  dropped.  ``lag`` is exposed per consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.chain.ws import WsClient
from mevstack.errors import MevstackError
from mevstack.events import EventName

log = logging.getLogger(__name__)

Publisher = Callable[[EventName, str | None, dict[str, Any]], Awaitable[None]]
_BATCH = 32  # blocks fetched per round trip while backfilling


class ReorgTooDeep(MevstackError):
    """The node's chain and ours share no block within the tracked depth."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    gas_used: int
    gas_limit: int
    base_fee: int | None
    extra_data: str

    @classmethod
    def from_rpc(cls, block: dict[str, Any]) -> BlockHeader:
        base_fee = block.get("baseFeePerGas")
        return cls(
            number=int(block["number"], 16),
            hash=str(block["hash"]).lower(),
            parent_hash=str(block["parentHash"]).lower(),
            timestamp=int(block["timestamp"], 16),
            gas_used=int(block["gasUsed"], 16),
            gas_limit=int(block["gasLimit"], 16),
            base_fee=int(base_fee, 16) if base_fee is not None else None,
            extra_data=str(block.get("extraData", "0x")),
        )


@dataclass(frozen=True, slots=True)
class NewBlock:
    header: BlockHeader
    logs: tuple[dict[str, Any], ...]  # raw JSON-RPC log objects, in log-index order


@dataclass(frozen=True, slots=True)
class Rollback:
    to_block: int  # the common ancestor: keep it, drop everything above (-1: drop everything)
    from_block: int  # the highest block they had received


StreamItem = NewBlock | Rollback


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Like ``eth_getLogs``: any of ``addresses``; per topic position, any of a set (None: any)."""

    addresses: frozenset[str] | None = None
    topics: tuple[frozenset[str] | None, ...] = ()

    @classmethod
    def of(
        cls,
        addresses: list[str] | None = None,
        topics0: list[str] | None = None,
        topics: list[list[str] | None] | None = None,
    ) -> LogFilter:
        positions: list[list[str] | None] = list(topics or [])
        if topics0 is not None:
            positions = [topics0, *positions[1:]]
        return cls(
            None if addresses is None else frozenset(a.lower() for a in addresses),
            tuple(None if p is None else frozenset(t.lower() for t in p) for p in positions),
        )

    def matches(self, entry: dict[str, Any]) -> bool:
        if (
            self.addresses is not None
            and str(entry.get("address", "")).lower() not in self.addresses
        ):
            return False
        topics = entry.get("topics") or []
        for position, wanted in enumerate(self.topics):
            if wanted is None:
                continue
            if position >= len(topics) or str(topics[position]).lower() not in wanted:
                return False
        return True


@dataclass(eq=False)
class Consumer:
    filter: LogFilter
    queue: asyncio.Queue[StreamItem]

    @property
    def lag(self) -> int:
        return self.queue.qsize()

    async def get(self) -> StreamItem:
        return await self.queue.get()


@dataclass
class ChainTracker:
    """The last ``depth`` delivered headers, each the parent of the next (pure, no I/O)."""

    depth: int = 128
    _headers: deque[BlockHeader] = field(default_factory=deque)

    @property
    def last(self) -> BlockHeader | None:
        return self._headers[-1] if self._headers else None

    @property
    def oldest(self) -> int | None:
        return self._headers[0].number if self._headers else None

    def hash_at(self, number: int) -> str | None:
        if not self._headers:
            return None
        index = number - self._headers[0].number
        if 0 <= index < len(self._headers):
            return self._headers[index].hash
        return None

    def extends(self, header: BlockHeader) -> bool:
        last = self.last
        return last is None or (
            header.number == last.number + 1 and header.parent_hash == last.hash
        )

    def push(self, header: BlockHeader) -> None:
        if not self.extends(header):
            raise ValueError(f"block {header.number} does not extend the tracked chain")
        self._headers.append(header)
        while len(self._headers) > self.depth:
            self._headers.popleft()

    def rollback(self, to_block: int) -> None:
        while self._headers and self._headers[-1].number > to_block:
            self._headers.pop()


class HeadStream:
    """Delivers one chain's blocks to registered consumers; see the module docstring."""

    def __init__(
        self,
        chain: str,
        rpc: JsonRpc,
        *,
        ws: WsClient | None = None,
        poll_interval: float = 1.0,
        start_block: int | None = None,
        depth: int = 128,
        queue_size: int = 1024,
        publish: Publisher | None = None,
    ) -> None:
        self.chain = chain
        self.rpc = rpc
        self.ws = ws
        self.poll_interval = poll_interval
        self.start_block = start_block
        self.tracker = ChainTracker(depth)
        self.queue_size = queue_size
        self.publish = publish
        self.consumers: list[Consumer] = []
        self.delivered = 0
        self.reorgs = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def register(self, log_filter: LogFilter | None = None) -> Consumer:
        consumer = Consumer(log_filter or LogFilter(), asyncio.Queue(self.queue_size))
        self.consumers.append(consumer)
        return consumer

    # -- the loop ------------------------------------------------------------------------------

    async def start(self) -> HeadStream:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"heads-{self.chain}")
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        subscription = await self.ws.subscribe("newHeads") if self.ws is not None else None
        hint: BlockHeader | None = None
        while True:
            try:
                await self.sync(hint)
            except RpcError as exc:
                log.warning("chain %s: head sync failed: %s", self.chain, exc)
            except ReorgTooDeep as exc:
                log.error("%s: starting over from the node's head", exc)
                await self._restart()
            except Exception:  # malformed node data must not end the stream
                log.exception("chain %s: head sync failed", self.chain)
            if subscription is None or self.ws is None:
                await asyncio.sleep(self.poll_interval)  # polling cadence without a WebSocket
                continue
            # Wait for a notification (or the reconnect marker), at most one polling period
            # while the socket is down and a longer safety-net period while it is up: a
            # silently dead socket must not stop the stream.
            period = self.poll_interval * (5 if self.ws.connected.is_set() else 1)
            notified: list[Any] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    notified.append(await subscription.get())
            while not subscription.queue.empty():
                notified.append(subscription.queue.get_nowait())
            hint = _newest_header(notified)

    # -- one sync round ------------------------------------------------------------------------

    async def sync(self, hint: BlockHeader | None = None) -> int:
        """Bring consumers up to the node's latest head; returns the number of blocks delivered.

        ``hint``: the header a ``newHeads`` notification carried.  When it is the direct child
        of the last delivered block (the usual case), it is delivered with its logs without
        asking the node for the head or the header again: one round trip per block, not three.
        """
        async with self._lock:
            if hint is not None and await self._next_from_hint(hint):
                return 1
            return await self._sync()

    async def _next_from_hint(self, hint: BlockHeader) -> bool:
        last = self.tracker.last
        if last is None or hint.number != last.number + 1 or not self.tracker.extends(hint):
            return False
        logs = await self._logs([hint.hash])
        if not logs or logs[0] is None:
            return False  # the node that answered has not got the block yet: the full sync
        await self._deliver(hint, logs[0])
        return True

    async def _sync(self) -> int:
        latest_raw = await self.rpc.request("eth_getBlockByNumber", ["latest", False])
        if latest_raw is None:
            return 0
        latest = BlockHeader.from_rpc(latest_raw)
        last = self.tracker.last
        if last is None:
            first = latest.number if self.start_block is None else self.start_block
        else:
            first = last.number + 1
            if latest.number <= last.number:
                known = self.tracker.hash_at(latest.number)
                if known is None or known == latest.hash:
                    return 0  # nothing new, or this endpoint is behind us
                await self._handle_reorg(latest.number)
        delivered = 0
        # Bounded so that a node flapping between forks cannot hold the lock forever.
        rounds_left = (latest.number - first) // _BATCH + 8
        while rounds_left > 0:
            rounds_left -= 1
            tip = self.tracker.last
            next_number = first if tip is None else tip.number + 1
            if next_number > latest.number:
                break
            headers = await self._headers(next_number, min(latest.number, next_number + _BATCH - 1))
            if not headers:
                break
            logs = await self._logs([h.hash for h in headers])
            logs += [None] * (len(headers) - len(logs))
            stalled = False
            for header, block_logs in zip(headers, logs, strict=True):
                if not self.tracker.extends(header):
                    await self._handle_reorg(header.number - 1)
                    break  # read on from the common ancestor
                if block_logs is None:
                    stalled = True  # this node has not got the block's logs yet: next round
                    break
                await self._deliver(header, block_logs)
                delivered += 1
            if stalled:
                break
        return delivered

    async def _headers(self, start: int, end: int) -> list[BlockHeader]:
        """Headers ``start..end`` up to the first one the node does not have."""
        answers = await self.rpc.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(start, end + 1)]
        )
        headers: list[BlockHeader] = []
        for answer in answers:
            if answer is None or isinstance(answer, RpcError):
                break
            headers.append(BlockHeader.from_rpc(answer))
        return headers

    async def _logs(self, hashes: list[str]) -> list[list[dict[str, Any]] | None]:
        """Logs per block hash; None from the first block whose logs the node cannot give."""
        query: dict[str, Any] = {}
        wanted = [c.filter.addresses for c in self.consumers]
        if wanted and all(a is not None for a in wanted):
            # Every consumer names its contracts: let the node filter (busy blocks carry
            # hundreds of logs nobody asked for).
            query["address"] = sorted(set().union(*(a for a in wanted if a is not None)))
        answers = await self.rpc.batch(
            [("eth_getLogs", [{"blockHash": h, **query}]) for h in hashes]
        )
        out: list[list[dict[str, Any]] | None] = []
        for answer in answers:
            if isinstance(answer, RpcError):  # UnknownBlock above all: not seen yet
                out.append(None)
                break
            out.append(sorted(answer, key=lambda e: int(e.get("logIndex", "0x0"), 16)))
        return out

    async def _restart(self) -> None:
        """Forget every tracked block; consumers get ``Rollback(to_block=-1)``: drop everything."""
        last = self.tracker.last
        self.tracker.rollback(-1)
        self.start_block = None
        if last is not None:
            for consumer in self.consumers:
                await consumer.queue.put(Rollback(to_block=-1, from_block=last.number))

    async def _handle_reorg(self, from_number: int) -> None:
        """Walk back from ``from_number`` to the newest block both chains share; roll back to it."""
        last = self.tracker.last
        assert last is not None
        number = min(from_number, last.number)
        oldest = self.tracker.oldest
        assert oldest is not None
        while number >= oldest:
            answer = await self.rpc.request("eth_getBlockByNumber", [hex(number), False])
            if answer is not None and str(answer["hash"]).lower() == self.tracker.hash_at(number):
                break
            number -= 1
        else:
            raise ReorgTooDeep(
                f"chain {self.chain}: reorg deeper than the {self.tracker.depth} tracked blocks"
            )
        self.tracker.rollback(number)
        self.reorgs += 1
        item = Rollback(to_block=number, from_block=last.number)
        for consumer in self.consumers:
            await consumer.queue.put(item)
        if self.publish is not None:
            await self.publish(
                EventName.CHAIN_REORG,
                self.chain,
                {"from_block": last.number, "to_block": number, "depth": last.number - number},
            )

    async def _deliver(self, header: BlockHeader, logs: list[dict[str, Any]]) -> None:
        self.tracker.push(header)
        self.delivered += 1
        for consumer in self.consumers:
            mine = tuple(e for e in logs if consumer.filter.matches(e))
            await consumer.queue.put(NewBlock(header, mine))
        if self.publish is not None:
            await self.publish(
                EventName.BLOCK_NEW,
                self.chain,
                {
                    "number": header.number,
                    "hash": header.hash,
                    "parent_hash": header.parent_hash,
                    "timestamp": header.timestamp,
                    "base_fee_wei": None if header.base_fee is None else str(header.base_fee),
                    "log_count": len(logs),
                },
            )


def _newest_header(notified: list[Any]) -> BlockHeader | None:
    """The highest header among ``newHeads`` notifications (``None`` after a reconnect marker,
    whose gap only a full sync can fill, or when none parses)."""
    newest: BlockHeader | None = None
    for item in notified:
        if not isinstance(item, dict):
            return None  # RESUBSCRIBED: notifications were missed
        try:
            header = BlockHeader.from_rpc(item)
        except (KeyError, TypeError, ValueError):
            continue
        if newest is None or header.number > newest.number:
            newest = header
    return newest
