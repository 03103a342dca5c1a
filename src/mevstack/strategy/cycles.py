"""The cycle index: every 2..4-pool cycle from a base token back to it, indexed by pool.

A cycle leaves its base token, passes through intermediate tokens that differ from each other
and from the base, and returns to the base; its pools are then necessarily distinct.  The same
pools may form a cycle from each of two base tokens: those are two cycles (different start).

Built once when pools are discovered and extended when pools appear: each cycle is enumerated
exactly once, when the newest of its pools is added (all its other pools are then already in the
graph), so adding pools one batch at a time yields the same cycles as building from scratch.
Per base, the newest pool either touches the base (it is then the first leg, read in the
orientation that starts with it) or not (then it is the middle leg of a triangle, or the second
leg of a 4-cycle in the orientation that puts it second rather than third): one search per case,
so no cycle is found twice from the same base.  4-pool cycles are searched only when
``max_hops`` is 4, so the 3-hop path pays nothing for them.

A cycle is stored in one orientation only; the screen evaluates both directions (at most one of
them can be profitable at the margin: their marginal-rate products multiply to at most 1).
Directions are encoded per leg as ``2·pool + (0 if zero_for_one else 1)`` so that a leg's reverse
is ``code ^ 1``, and the cycles live in a NumPy array of leg codes: the float screen over all
cycles is then a gather and a row sum.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

from mevstack.strategy.pools import PoolKeyLike

MIN_HOPS = 2
MAX_SUPPORTED_HOPS = 4


@dataclass(frozen=True, slots=True)
class PoolKey:
    """The static identity of a pool as the index knows it."""

    address: str
    token0: str
    token1: str
    dex: str
    kind: str


@dataclass(frozen=True, slots=True)
class Cycle:
    """A cycle in its stored (forward) orientation: pool indices and per-leg directions."""

    start: str
    pools: tuple[int, ...]
    zero_for_one: tuple[bool, ...]

    def reversed(self) -> Cycle:
        return Cycle(
            self.start,
            tuple(reversed(self.pools)),
            tuple(not z for z in reversed(self.zero_for_one)),
        )


class CycleIndex:
    """Cycles over a growing pool set, with the pool -> cycles index and the leg-code array.

    Stored compactly (a cycle is its row of leg codes, its start token's index, and its id in
    each of its pools' lists: about 50 bytes for four pools), so that millions of 4-pool cycles
    fit; ``cycles[i]`` builds the ``Cycle`` when asked.
    """

    def __init__(self, base_tokens: Iterable[str], max_hops: int = 3) -> None:
        if not MIN_HOPS <= max_hops <= MAX_SUPPORTED_HOPS:
            raise ValueError(
                f"max_hops must be between {MIN_HOPS} and {MAX_SUPPORTED_HOPS}, not {max_hops}"
            )
        self.base_tokens: tuple[str, ...] = tuple(dict.fromkeys(base_tokens))
        self.max_hops = max_hops
        self.pools: list[PoolKey] = []
        # Addresses and tokens are matched case-insensitively (the market keys pools by lower
        # case, the config checksums): lower case inside, as given outside.
        self.pool_ids: dict[str, int] = {}  # lower-case address -> pool index
        self._lower: list[tuple[str, str]] = []  # pool index -> lower-case (token0, token1)
        self.cycles = CycleList(self)
        self.by_pool: list[array[int]] = []  # pool index -> ids of the cycles through it
        # token -> neighbour token -> pool indices between them
        self._adj: dict[str, dict[str, list[int]]] = {}
        self._starts = array("B")  # cycle id -> index of its start in ``base_tokens``
        self._codes = np.zeros((0, self.max_hops), dtype=np.int64)
        self._pending = array("q")  # rows not yet in ``_codes``, ``max_hops`` codes each

    def __len__(self) -> int:
        return len(self._starts)

    def add_pools(self, pools: Iterable[PoolKeyLike]) -> int:
        """Add pools not seen before; returns how many new cycles they complete."""
        before = len(self)
        for pool in pools:
            address = pool.address.lower()
            t0, t1 = pool.token0.lower(), pool.token1.lower()
            if address in self.pool_ids or t0 == t1:
                continue
            index = len(self.pools)
            self.pools.append(PoolKey(pool.address, pool.token0, pool.token1, pool.dex, pool.kind))
            self.pool_ids[address] = index
            self._lower.append((t0, t1))
            self.by_pool.append(array("i"))
            self._enumerate(index, t0, t1)
            self._adj.setdefault(t0, {}).setdefault(t1, []).append(index)
            self._adj.setdefault(t1, {}).setdefault(t0, []).append(index)
        return len(self) - before

    def cycle(self, cycle_id: int) -> Cycle:
        """The cycle with this id, in its stored orientation."""
        done = len(self._codes)
        if cycle_id < done:
            row: Sequence[int] = self._codes[cycle_id].tolist()
        else:
            offset = (cycle_id - done) * self.max_hops
            row = self._pending[offset : offset + self.max_hops]
        legs = [code for code in row if code >= 0]
        return Cycle(
            self.base_tokens[self._starts[cycle_id]],
            tuple(code >> 1 for code in legs),
            tuple(code & 1 == 0 for code in legs),
        )

    def cycles_touching(self, addresses: Iterable[str]) -> list[int]:
        """Ids of the cycles that use at least one of these pools (unknown pools are ignored)."""
        ids: set[int] = set()
        for address in addresses:
            index = self.pool_ids.get(address.lower())
            if index is not None:
                ids.update(self.by_pool[index])
        return sorted(ids)

    def pools_between(self, token_a: str, token_b: str) -> list[int]:
        """Indices of the pools trading ``token_a`` against ``token_b``."""
        return list(self._adj.get(token_a.lower(), {}).get(token_b.lower(), ()))

    def leg_codes(self) -> npt.NDArray[np.int64]:
        """``(n_cycles, max_hops)`` forward leg codes; short cycles are padded with ``-1``.

        A pad and its reverse (``-1 ^ 1 == -2``) index the last two entries of a rate table, which
        must therefore end in two zeros (see ``rate_table`` in the scanner).
        """
        if self._pending:
            rows = np.frombuffer(self._pending, dtype=np.int64).reshape(-1, self.max_hops)
            self._codes = np.concatenate([self._codes, rows])  # a copy: the buffer is released
            del rows
            self._pending = array("q")
        return self._codes

    def _emit(self, start: str, legs: Sequence[int], tokens: Sequence[str]) -> None:
        # One orientation per cycle: the one whose first pool is older than its last.
        if legs[0] > legs[-1]:
            legs = legs[::-1]
            tokens = tokens[::-1]
        lower = self._lower
        cycle_id = len(self._starts)
        self._starts.append(self.base_tokens.index(start))
        codes = [2 * p + (0 if tokens[i] == lower[p][0] else 1) for i, p in enumerate(legs)]
        self._pending.extend(codes)
        if len(codes) < self.max_hops:
            self._pending.extend([-1] * (self.max_hops - len(codes)))
        for pool in set(legs):
            self.by_pool[pool].append(cycle_id)

    def _enumerate(self, new: int, t0: str, t1: str) -> None:
        """Every cycle whose newest pool is ``new`` (all others are in the graph already)."""
        adj = self._adj
        four = self.max_hops >= 4
        for start in self.base_tokens:
            base = start.lower()
            base_adj = adj.get(base, {})
            if base in (t0, t1):
                other = t1 if t0 == base else t0
                for older in base_adj.get(other, ()):
                    self._emit(start, [new, older], [base, other, base])
                if self.max_hops < 3:
                    continue
                # base -new-> other -q2-> mid -q3-> base
                for mid, middles in adj.get(other, {}).items():
                    if mid == base:
                        continue
                    closing = base_adj.get(mid)
                    if not closing:
                        continue
                    for q2 in middles:
                        for q3 in closing:
                            self._emit(start, [new, q2, q3], [base, other, mid, base])
                if four:
                    self._four_from_base(start, base, new, other)
            elif self.max_hops >= 3:
                # base -q1-> token0 -new-> token1 -q3-> base
                firsts = base_adj.get(t0)
                lasts = base_adj.get(t1)
                if firsts and lasts:
                    for q1 in firsts:
                        for q3 in lasts:
                            self._emit(start, [q1, new, q3], [base, t0, t1, base])
                if four:
                    # new second, read both ways: base -q1-> a -new-> b -q3-> c -q4-> base
                    self._four_through(start, base, new, t0, t1)
                    self._four_through(start, base, new, t1, t0)

    def _four_from_base(self, start: str, base: str, new: int, first: str) -> None:
        """4-cycles base -new-> first -q2-> second -q3-> third -q4-> base."""
        adj = self._adj
        base_adj = adj.get(base, {})
        for second, q2s in adj.get(first, {}).items():
            if second == base:
                continue
            for third, q3s, q4s in _common(adj[second], base_adj):
                if third == first:
                    continue
                tokens = [base, first, second, third, base]
                for q2 in q2s:
                    for q3 in q3s:
                        for q4 in q4s:
                            self._emit(start, [new, q2, q3, q4], tokens)

    def _four_through(self, start: str, base: str, new: int, a: str, b: str) -> None:
        """4-cycles base -q1-> a -new-> b -q3-> c -q4-> base (``new`` does not touch base)."""
        adj = self._adj
        base_adj = adj.get(base, {})
        firsts = base_adj.get(a)
        if not firsts:
            return
        for c, q3s, q4s in _common(adj.get(b, {}), base_adj):
            if c == a:
                continue
            tokens = [base, a, b, c, base]
            for q1 in firsts:
                for q3 in q3s:
                    for q4 in q4s:
                        self._emit(start, [q1, new, q3, q4], tokens)


class CycleList(Sequence[Cycle]):
    """``index.cycles``: the index's cycles as a sequence, each built when read."""

    def __init__(self, index: CycleIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, item: int) -> Cycle: ...
    @overload
    def __getitem__(self, item: slice) -> list[Cycle]: ...
    def __getitem__(self, item: int | slice) -> Cycle | list[Cycle]:
        if isinstance(item, slice):
            return [self._index.cycle(i) for i in range(*item.indices(len(self)))]
        if item < 0:
            item += len(self)
        if not 0 <= item < len(self):
            raise IndexError(f"cycle {item} of {len(self)}")
        return self._index.cycle(item)


def _common(
    around: dict[str, list[int]], base_adj: dict[str, list[int]]
) -> Iterator[tuple[str, list[int], list[int]]]:
    """Tokens next to both a token and the base (never the base itself: no pool joins a token
    to itself), with the pools to each; walks the smaller neighbourhood, as hubs have many."""
    if len(around) <= len(base_adj):
        for token, pools in around.items():
            closing = base_adj.get(token)
            if closing:
                yield token, pools, closing
    else:
        for token, closing in base_adj.items():
            via = around.get(token)
            if via:
                yield token, via, closing
