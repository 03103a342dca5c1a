"""Log-driven pool state for one chain: per-block updates, bounded history, rollback, spot checks.

``PoolStore.apply_block`` moves every pool forward with the logs of one block, without reading the
chain.  Each block keeps the previous version of every pool it changed (a bounded history), so
``rollback(n)`` restores every pool exactly as it was at block ``n`` after a reorg.  Blocks must
arrive in order: a block at or below the head is refused unless it repeats the head exactly, and
a pool whose state was read at a later block than the log's ignores that log (it already
includes it).  ``spot_check`` compares a sample with a fresh read and resyncs what diverged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.market.base import Log, PoolInfo, PoolKind, PoolState, same_state
from mevstack.market.errors import RollbackTooDeep, StaleUpdate
from mevstack.obs.metrics import counter

log = logging.getLogger(__name__)

DIVERGENCES = counter(
    "mevstack_market_pool_divergences_total",
    "Pools whose log-driven state differed from a fresh chain read (then resynced)",
    ["chain"],
)
SPOT_CHECKS = counter(
    "mevstack_market_spot_checks_total", "Pools compared with a fresh chain read", ["chain"]
)


@dataclass(slots=True)
class _BlockRecord:
    number: int
    block_hash: str
    # address (lower case) -> the pool's state before this block (None: the pool was new).
    previous: dict[str, PoolState | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Divergence:
    """A pool whose kept state differed from the chain at ``block_number``."""

    address: str
    block_number: int
    kept: PoolState
    chain: PoolState


class PoolStore:
    """Every tracked pool of one chain, kept current from logs."""

    def __init__(
        self, kinds: Mapping[str, PoolKind], *, chain: str = "", max_history: int = 128
    ) -> None:
        self.chain = chain
        self._kinds = dict(kinds)
        self._pools: dict[str, PoolState] = {}
        self._infos: dict[str, PoolInfo] = {}
        self._history: deque[_BlockRecord] = deque(maxlen=max_history)
        self._head: tuple[int, str] | None = None
        self._base: tuple[int, str] | None = None
        self._topics = frozenset(t for k in self._kinds.values() for t in k.pool_topics)

    # -- reading ---------------------------------------------------------------------------

    @property
    def kinds(self) -> Mapping[str, PoolKind]:
        return self._kinds

    @property
    def head(self) -> tuple[int, str] | None:
        """(number, hash) of the last block applied, or None before the first."""
        return self._head

    def __len__(self) -> int:
        return len(self._pools)

    def get(self, address: str) -> PoolState | None:
        return self._pools.get(address.lower())

    def pools(self) -> list[PoolState]:
        return list(self._pools.values())

    def info(self, address: str) -> PoolInfo | None:
        return self._infos.get(address.lower())

    def infos(self) -> list[PoolInfo]:
        return list(self._infos.values())

    def block_hash(self, number: int) -> str | None:
        """The hash this store applied at ``number``, if still in the history (reorg checks)."""
        for record in self._history:
            if record.number == number:
                return record.block_hash
        return None

    # -- writing ---------------------------------------------------------------------------

    def set_head(self, number: int, block_hash: str) -> None:
        """Start (or restart) from a snapshot read at ``number``; history starts empty."""
        self._head = (number, block_hash)
        self._base = self._head
        self._history.clear()

    def put(self, info: PoolInfo, state: PoolState) -> None:
        """Add or replace a pool's state (a fresh read, a resync or a newly discovered pool).

        When the head block's record exists, the replaced version is kept in it so that a
        rollback below the head undoes this too.
        """
        key = info.address.lower()
        if self._history and self._history[-1].number == state.block_number:
            self._history[-1].previous.setdefault(key, self._pools.get(key))
        self._pools[key] = state
        self._infos[key] = info

    def apply_block(self, number: int, block_hash: str, logs: Iterable[Log]) -> set[str]:
        """Apply one block's logs (any order; sorted by logIndex here); returns changed pools."""
        if self._head is not None:
            head_number, head_hash = self._head
            if number == head_number and block_hash == head_hash:
                return set()  # the same block again: applying twice must change nothing
            if number <= head_number:
                raise StaleUpdate(
                    f"block {number} is not after the head {head_number}: roll back first"
                )
        record = _BlockRecord(number, block_hash)
        previous = record.previous
        pools = self._pools
        topics = self._topics
        ordered = sorted(logs, key=_log_index)
        for entry in ordered:
            if entry.get("removed") or not entry["topics"] or entry["topics"][0] not in topics:
                continue
            key = entry["address"].lower()
            state = pools.get(key)
            if state is None:
                continue
            if key not in previous:
                if state.block_number >= number:
                    continue  # read at or after this block: the log is already in it
                previous[key] = state
            pools[key] = self._kinds[state.kind].apply_log(state, entry, number)
        self._history.append(record)
        self._head = (number, block_hash)
        return set(previous)

    def rollback(self, to_block: int) -> set[str]:
        """Restore every pool exactly as it was at ``to_block``; returns the pools restored."""
        if self._head is None or to_block >= self._head[0]:
            return set()
        oldest = self._history[0].number if self._history else self._head[0]
        if to_block < oldest - 1:
            raise RollbackTooDeep(
                f"cannot roll back to block {to_block}: history reaches back to {oldest - 1}"
            )
        restored: set[str] = set()
        kept_hash = ""
        while self._history and self._history[-1].number > to_block:
            record = self._history.pop()
            for key, state in record.previous.items():
                restored.add(key)
                if state is None:
                    self._pools.pop(key, None)
                    self._infos.pop(key, None)
                else:
                    self._pools[key] = state
        if self._history:
            kept_hash = self._history[-1].block_hash
        elif self._base is not None and self._base[0] == to_block:
            kept_hash = self._base[1]
        self._head = (to_block, kept_hash)
        return restored


def _log_index(entry: Log) -> int:
    value = entry.get("logIndex")
    return int(value, 16) if isinstance(value, str) else int(value or 0)


async def load_pools(
    rpc: JsonRpc, kinds: Mapping[str, PoolKind], infos: Sequence[PoolInfo], block_number: int
) -> list[tuple[PoolInfo, PoolState]]:
    """Fresh states of ``infos`` at ``block_number``, each kind's pools in its batched calls."""
    by_kind: dict[str, list[PoolInfo]] = {}
    for info in infos:
        by_kind.setdefault(info.kind, []).append(info)
    out: list[tuple[PoolInfo, PoolState]] = []
    for kind, group in by_kind.items():
        states = await kinds[kind].load_states(rpc, group, block_number)
        out.extend(zip(group, states, strict=True))
    return out


async def spot_check(
    store: PoolStore,
    rpc: JsonRpc,
    *,
    sample_size: int = 20,
    rng: random.Random | None = None,
) -> list[Divergence]:
    """Compare a random sample of pools with a fresh read at the head; resync what diverged.

    Each divergence is counted (``mevstack_market_pool_divergences_total``) and logged.
    """
    head = store.head
    if head is None:
        return []
    infos = store.infos()
    chooser = rng or random.Random()
    sample = infos if len(infos) <= sample_size else chooser.sample(infos, sample_size)
    fresh = await load_pools(rpc, store.kinds, sample, head[0])
    SPOT_CHECKS.labels(chain=store.chain).inc(len(fresh))
    found: list[Divergence] = []
    for info, chain_state in fresh:
        kept = store.get(info.address)
        if kept is not None and same_state(kept, chain_state):
            continue
        if kept is not None:
            found.append(Divergence(info.address, head[0], kept, chain_state))
            DIVERGENCES.labels(chain=store.chain).inc()
            log.warning(
                "pool state diverged from the chain; resynced",
                extra=_divergence_fields(store.chain, info, head[0]),
            )
        store.put(info, chain_state)
    return found


async def run_spot_checks(
    store: PoolStore, rpc: JsonRpc, *, every_s: float = 60.0, sample_size: int = 20
) -> None:
    """Spot-check forever (run as a task; cancel to stop).  A failed read is logged and retried
    at the next period: a spot check must never stop the engine."""
    rng = random.Random()
    while True:
        try:
            await spot_check(store, rpc, sample_size=sample_size, rng=rng)
        except MevstackError as exc:
            log.warning("spot check of %s failed: %s", store.chain, exc)
        await asyncio.sleep(every_s)  # the checking cadence, not a synchronisation


def _divergence_fields(chain: str, info: PoolInfo, block: int) -> dict[str, Any]:
    return {"chain": chain, "pool": info.address, "dex": info.dex, "block_number": block}
