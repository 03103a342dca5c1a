"""Arbitrage scans in a worker process, so a heavy scan never holds the engine's event loop.

The exact V3 sizing costs tens of milliseconds per touched V3 pool (pure-Python integer swap
math); in the engine process that time would stall every other task (API, WebSocket, other
chains).  A thread does not help pure-Python work under the GIL, so the scan runs in a separate
process that keeps, per chain, its own scanner and its own copy of the pool states:

* a full scan ships every pool (start, rollback, rebuild, worker restart);
* an incremental scan ships only the pools that changed (and new pools), which is exactly the
  scope the scan re-evaluates, so the copy is always current where it is read.

Only frozen dataclasses cross the boundary (pool infos and states in, Opportunities out).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from mevstack.market.base import PoolInfo, PoolState
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.valuation import GasInputs


@dataclass(frozen=True, slots=True)
class ScanRequest:
    terms: ChainTerms
    full: bool  # replace the worker's copy with ``states`` and rescan everything
    infos: tuple[PoolInfo, ...]  # pools to index (all of them on a full scan)
    states: Mapping[str, PoolState]  # lower-case address -> state
    scope: frozenset[str] | None  # changed pools (None: full)
    block_number: int
    gas: GasInputs
    detected_at: str


@dataclass
class _ChainCopy:
    scanner: ArbitrageScanner
    states: dict[str, PoolState]


_COPIES: dict[str, _ChainCopy] = {}  # per chain, inside the worker process


def scan_in_worker(request: ScanRequest) -> tuple[list[Opportunity], float]:
    """Runs in the worker process: update this chain's copy, scan; (results, scan ms)."""
    chain = request.terms.chain
    copy = _COPIES.get(chain)
    if request.full or copy is None or copy.scanner.terms != request.terms:
        copy = _ChainCopy(ArbitrageScanner(request.terms), {})
        _COPIES[chain] = copy
        scope: frozenset[str] | None = None
    else:
        scope = request.scope
    copy.states.update(request.states)
    copy.scanner.add_pools(request.infos)
    started = time.perf_counter()
    found = copy.scanner.scan(
        copy.states,
        block_number=request.block_number,
        gas=request.gas,
        detected_at=request.detected_at,
        changed=scope,
    )
    return found, (time.perf_counter() - started) * 1000.0


class ScanProcess:
    """One worker process shared by the chains of an engine (scans queue up in it)."""

    def __init__(self) -> None:
        # spawn: forking a process that runs an event loop and threads is not safe.
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )

    async def scan(self, request: ScanRequest) -> tuple[list[Opportunity], float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, scan_in_worker, request)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_request(
    terms: ChainTerms,
    *,
    infos: Sequence[PoolInfo],
    states: Mapping[str, Any],
    scope: set[str] | None,
    shipped_pools: int,
    block_number: int,
    gas: GasInputs,
    detected_at: str,
) -> ScanRequest:
    """What to ship: everything for a full scan; else the changed pools and the new ones
    (``infos[shipped_pools:]``: pool infos only ever grow until a rebuild, which is full)."""
    if scope is None:
        ship_infos = tuple(infos)
        ship = {i.address.lower(): states[i.address] for i in infos}
    else:
        ship_infos = tuple(infos[shipped_pools:])
        wanted = {a.lower() for a in scope} | {i.address.lower() for i in ship_infos}
        ship = {a: states[a] for a in wanted if states.get(a) is not None}
    return ScanRequest(
        terms=terms,
        full=scope is None,
        infos=ship_infos,
        states=ship,
        scope=None if scope is None else frozenset(a.lower() for a in scope),
        block_number=block_number,
        gas=gas,
        detected_at=detected_at,
    )
