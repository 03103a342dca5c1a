"""Keeping a PoolStore on the chain's head stream: rollbacks, new blocks, full resyncs.

The chain layer's :class:`mevstack.chain.heads.HeadStream` delivers every block once, in order,
with its logs, and a ``Rollback(to_block)`` to the common ancestor before the blocks of a new
fork.  Each item maps to one store operation here.  A rollback deeper than the store's history
(or the stream's "drop everything", ``to_block=-1``) reloads every pool from the chain instead.
"""

from __future__ import annotations

import logging

from mevstack.chain.heads import Consumer, HeadStream, LogFilter, NewBlock, Rollback
from mevstack.chain.rpc import JsonRpc
from mevstack.market.errors import RollbackTooDeep
from mevstack.market.registry import PoolRegistry
from mevstack.market.state import PoolStore, load_pools

log = logging.getLogger(__name__)


def log_filter(registry: PoolRegistry) -> LogFilter:
    """The logs the market needs: its pools' state changes and its factories' creations."""
    topics = {t for k in registry.kinds.values() for t in k.pool_topics}
    topics |= {registry.kinds[d.kind].creation_topic for d in registry.dexes}
    return LogFilter.of(topics0=sorted(topics))


def register(stream: HeadStream, registry: PoolRegistry) -> Consumer:
    return stream.register(log_filter(registry))


async def resync(registry: PoolRegistry, store: PoolStore, rpc: JsonRpc) -> None:
    """Reload every known pool at the node's latest block and restart the history there."""
    latest = await rpc.request("eth_getBlockByNumber", ["latest", False])
    number = int(latest["number"], 16)
    loaded = await load_pools(rpc, registry.kinds, store.infos(), number)
    store.set_head(number, str(latest["hash"]))
    for info, state in loaded:
        store.put(info, state)


async def apply_item(
    registry: PoolRegistry, store: PoolStore, item: NewBlock | Rollback
) -> set[str]:
    """Apply one stream item; returns the addresses (lower case) of the pools it changed."""
    if isinstance(item, Rollback):
        if item.to_block < 0:
            raise RollbackTooDeep("the head stream dropped every block: reload from the chain")
        return store.rollback(item.to_block)
    header = item.header
    head = store.head
    if head is not None and header.number <= head[0] and store.block_hash(header.number) is None:
        return set()  # older than the snapshot the store was built from: already included
    return await registry.on_block(store, header.number, header.hash, list(item.logs))


async def follow(registry: PoolRegistry, store: PoolStore, consumer: Consumer) -> None:
    """Apply the stream to the store forever (run it as a task; cancel it to stop)."""
    while True:
        item = await consumer.get()
        try:
            await apply_item(registry, store, item)
        except RollbackTooDeep as exc:
            log.error("market state for %s: %s; reloading every pool", store.chain, exc)
            await resync(registry, store, registry.rpc)
