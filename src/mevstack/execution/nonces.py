"""Nonces of one (chain, account): reservation under concurrency, restart reconciliation, no gaps.

Life of a nonce: :meth:`NonceManager.reserve` hands out the lowest free nonce (a released one
first, else the next new one) → the caller signs and sends → :meth:`Reservation.commit` once the
transaction was broadcast publicly or its bundle landed, or :meth:`Reservation.release` when it
was never sent or its bundle did not land (a bundle that did not land did not consume its nonce).
A released nonce is handed out again before any new one, so the sequence has no gap as long as
the caller keeps sending; :meth:`NonceManager.gaps` lists free nonces below a committed one (the
caller fills them, e.g. with :func:`cancellation_tx`).

A bundle takes an *exclusive* reservation: it waits for every other reservation to settle and
nothing else is reserved until it is committed or released, so nothing is sent at the next nonce
while a bundle is being retargeted.

Restarts: :meth:`NonceManager.sync` takes the highest ``pending`` transaction count over every
endpoint that answers (endpoints can disagree) and the locally recorded next nonce (persisted on
every commit in the store's ``kv_state``), so a transaction that only one node or our own record
knows about is never reused.

Healing: :meth:`NonceManager.resync` is the same reconciliation while the manager runs, called
when a node says our nonce is stale ("nonce too low", "replacement transaction underpriced",
"already known") or a send's outcome was unknown; it only moves the next nonce up.  With
``trust_chain`` (nothing of ours in flight: every sent transaction is mined or settled) it takes
the chain's ``pending`` count even when that is lower than our record, which is how the manager
follows a chain that came back shorter (a deep reorg, a node restored from an older state)
instead of leaving a gap no transaction can ever fill.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from eth_utils.address import to_checksum_address

from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.obs.metrics import NONCE_RESYNCS
from mevstack.store import Store

log = logging.getLogger(__name__)

PRICE_BUMP_PERCENT = 10  # geth's txpool default: both fee fields must rise by at least 10%


class NonceError(MevstackError):
    """Nonces cannot be synchronised or a reservation was misused."""


def bumped(old: int, percent: int = PRICE_BUMP_PERCENT) -> int:
    """The smallest fee that replaces ``old``: >= old * (100 + percent) / 100 and > old."""
    return max(-(-old * (100 + percent) // 100), old + 1)


def replacement_fees(
    max_fee_per_gas: int, max_priority_fee_per_gas: int, percent: int = PRICE_BUMP_PERCENT
) -> tuple[int, int]:
    """Fees for a replacement at the same nonce, accepted by geth-style pools (both bumped)."""
    priority = bumped(max_priority_fee_per_gas, percent)
    return max(bumped(max_fee_per_gas, percent), priority), priority


def cancellation_tx(
    *,
    account: str,
    chain_id: int,
    nonce: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
) -> dict[str, Any]:
    """A 0-value self-transfer at ``nonce`` (EIP-1559) that consumes it: a cancellation when
    priced with :func:`replacement_fees` over the transaction it replaces, or a gap filler."""
    return {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to_checksum_address(account),
        "value": 0,
        "data": b"",
        "gas": 21_000,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": max_priority_fee_per_gas,
    }


@dataclass(eq=False)
class Reservation:
    """One reserved nonce; exactly one of commit() / release() ends it."""

    manager: NonceManager
    nonce: int
    exclusive: bool
    done: bool = field(default=False)

    def commit(self) -> None:
        """The nonce is consumed (broadcast publicly, or its bundle landed)."""
        self.manager._settle(self, consumed=True)

    def release(self) -> None:
        """The nonce was not consumed (never sent, or its bundle did not land)."""
        self.manager._settle(self, consumed=False)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # leaving the block without a verdict means nothing went out
        if not self.done:
            self.release()


class NonceManager:
    """The nonces of one account on one chain."""

    def __init__(
        self,
        chain: str,
        account: str,
        endpoints: Sequence[JsonRpc],
        *,
        store: Store | None = None,
    ) -> None:
        if not endpoints:
            raise NonceError(f"chain {chain}: nonce manager needs at least one endpoint")
        self.chain = chain
        self.account = to_checksum_address(account)
        self.endpoints = list(endpoints)
        self.store = store
        self._key = f"nonce:{chain}:{self.account}"
        self._next: int | None = None
        self._free: list[int] = []
        self._outstanding: set[int] = set()
        self._committed_max = -1
        self._exclusive: Reservation | None = None
        self._exclusive_waiting = 0
        self._cond = asyncio.Condition()
        self._sync_lock = asyncio.Lock()
        self._wakers: set[asyncio.Task[None]] = set()

    @property
    def next_nonce(self) -> int | None:
        return self._next

    def _recorded(self) -> int:
        if self.store is None:
            return 0
        value = self.store.kv_get(self._key)
        return int(value) if isinstance(value, int | str) else 0

    async def pending_count(self) -> int:
        """The highest ``pending`` transaction count over the endpoints that answer."""
        results = await asyncio.gather(
            *(
                e.request("eth_getTransactionCount", [self.account, "pending"])
                for e in self.endpoints
            ),
            return_exceptions=True,
        )
        counts = [int(r, 16) for r in results if isinstance(r, str)]
        if not counts:
            first = next((r for r in results if isinstance(r, BaseException)), None)
            raise NonceError(
                f"chain {self.chain}: no endpoint answered the pending nonce of {self.account}"
                f" ({first})"
            )
        return max(counts)

    async def sync(self) -> int:
        """Reconcile with the chain: max(pending count over answering endpoints, our record)."""
        count = await self.pending_count()
        async with self._cond:
            if self._outstanding:
                raise NonceError(f"chain {self.chain}: cannot resync with reservations open")
            self._next = max(count, self._recorded(), self._next or 0)
            self._free = [n for n in self._free if n < self._next]
            return self._next

    async def resync(self, reason: str, *, trust_chain: bool = False) -> int:
        """Reconcile with the chain while running (see the module docstring); ``reason`` labels
        the metric and the log line.  Open reservations stay valid: without ``trust_chain``
        the next nonce only moves up, and ``trust_chain`` is refused while any is open."""
        count = await self.pending_count()
        async with self._cond:
            before = self._next
            if trust_chain:
                if self._outstanding:
                    raise NonceError(f"chain {self.chain}: cannot resync with reservations open")
                self._next = count
                self._committed_max = min(self._committed_max, count - 1)
                if self.store is not None:
                    self.store.kv_set(self._key, count)
            else:
                self._next = max(count, self._recorded(), self._next or 0)
            self._free = [n for n in self._free if count <= n < self._next]
            self._cond.notify_all()
            after = self._next
        NONCE_RESYNCS.labels(chain=self.chain, reason=reason).inc()
        log.info(
            "chain %s: nonce of %s resynchronised (%s): next %s -> %d, chain pending %d",
            self.chain,
            self.account,
            reason,
            before,
            after,
            count,
        )
        return after

    async def reserve(self, *, exclusive: bool = False) -> Reservation:
        """The next nonce to use; ``exclusive`` (bundles) waits until no other is outstanding
        and blocks new reservations until it settles."""
        if self._next is None:
            async with self._sync_lock:  # the first callers share one sync
                if self._next is None:
                    await self.sync()
        async with self._cond:
            if exclusive:
                self._exclusive_waiting += 1
                try:
                    await self._cond.wait_for(
                        lambda: not self._outstanding and self._exclusive is None
                    )
                finally:
                    self._exclusive_waiting -= 1
            else:
                await self._cond.wait_for(
                    lambda: self._exclusive is None and self._exclusive_waiting == 0
                )
            assert self._next is not None
            if self._free:
                nonce = self._free.pop(0)
            else:
                nonce = self._next
                self._next += 1
            self._outstanding.add(nonce)
            reservation = Reservation(self, nonce, exclusive)
            if exclusive:
                self._exclusive = reservation
            return reservation

    def _settle(self, reservation: Reservation, *, consumed: bool) -> None:
        if reservation.done:
            raise NonceError(f"nonce {reservation.nonce} already committed or released")
        reservation.done = True
        self._outstanding.discard(reservation.nonce)
        if self._exclusive is reservation:
            self._exclusive = None
        assert self._next is not None
        if consumed:
            self._committed_max = max(self._committed_max, reservation.nonce)
            if self.store is not None and reservation.nonce + 1 > self._recorded():
                self.store.kv_set(self._key, reservation.nonce + 1)
        elif reservation.nonce == self._next - 1:
            self._next -= 1
            while self._free and self._free[-1] == self._next - 1:
                self._free.pop()
                self._next -= 1
        else:
            bisect.insort(self._free, reservation.nonce)
        # settling is synchronous (callable from any code path); waiters are woken right after
        task = asyncio.get_running_loop().create_task(self._notify())
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def gaps(self) -> list[int]:
        """Free nonces below a consumed one: they block everything after them until filled."""
        return [n for n in self._free if n < self._committed_max]
