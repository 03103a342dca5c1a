"""A path as the sizing sees it: legs, exact hop-by-hop evaluation, and Möbius basics.

Composing V2-like hops ``x -> a·x/(b + c·x)`` gives another Möbius map
``a = a1·a2, b = b1·b2, c = b2·c1 + c2·a1``; its real profit ``a·x/(b + c·x) − x`` peaks where
``(b + c·x)² = a·b``, i.e. ``x* = (√(a·b) − b) / c``, and is positive at the margin iff ``a > b``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mevstack.strategy.pools import Mobius, PoolModel

INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True, slots=True)
class Leg:
    """One hop of a path: a pool state, its model, and the swap direction."""

    state: Any
    model: PoolModel
    zero_for_one: bool


class PathEval(NamedTuple):
    """A path evaluated exactly for one input: every hop's output and tick crossings.

    (A named tuple rather than a frozen dataclass: one is built per sized cycle, and building
    a frozen dataclass costs several times more.)
    """

    amount_in: int
    amounts_out: tuple[int, ...]
    ticks_crossed: tuple[int, ...]

    @property
    def amount_out(self) -> int:
        return self.amounts_out[-1]

    @property
    def gross_profit(self) -> int:
        return self.amount_out - self.amount_in

    @property
    def total_ticks(self) -> int:
        return sum(self.ticks_crossed)


class Sized(NamedTuple):
    """The chosen amount: its exact evaluation, the objective (net, in native wei) there, and
    whether it is proven optimal (a certificate checked: every all-V2 path whose bound was
    reached or whose plateau was exhausted; never a path through a pool without one)."""

    path: PathEval
    net: int
    proven: bool = False


NetFn = Callable[[PathEval], int | None]


def evaluate(legs: Sequence[Leg], amount_in: int) -> PathEval | None:
    """Hop-by-hop exact evaluation (``None`` when some hop cannot fill its input)."""
    if amount_in <= 0:
        return None
    outs: list[int] = []
    ticks: list[int] = []
    amount = amount_in
    for leg in legs:
        quote = leg.model.quote(leg.state, leg.zero_for_one, amount)
        if quote is None:
            return None
        amount = quote.amount_out
        outs.append(amount)
        ticks.append(quote.ticks_crossed)
    return PathEval(amount_in, tuple(outs), tuple(ticks))


Evaluator = Callable[[int], PathEval | None]
"""``evaluate`` of one fixed path, as a function of the input amount."""


def path_evaluator(legs: Sequence[Leg]) -> Evaluator:
    """``evaluate`` for one path at many amounts (the searches): each leg's per-state work is
    done once (``PoolModel.trader``: a V3 pool's full swap steps are computed once and only the
    last, partial one per amount), with the same exact results."""
    traders = [leg.model.trader(leg.state, leg.zero_for_one) for leg in legs]

    def at(amount_in: int) -> PathEval | None:
        if amount_in <= 0:
            return None
        outs: list[int] = []
        ticks: list[int] = []
        amount = amount_in
        for trade in traders:
            done = trade(amount)
            if done is None or done[1] <= 0:
                return None
            amount = done[1]
            outs.append(amount)
            ticks.append(done[2])
        return PathEval(amount_in, tuple(outs), tuple(ticks))

    return at


def minimal_input(legs: Sequence[Leg], amount_out: int) -> int | None:
    """The least input whose exact output through every hop is at least ``amount_out``."""
    needed = amount_out
    for leg in reversed(legs):
        found = leg.model.amount_in_for(leg.state, leg.zero_for_one, needed)
        if found is None:
            return None
        needed = found
    return needed


def compose(maps: Sequence[Mobius]) -> Mobius:
    """The Möbius map of applying ``maps`` in order."""
    a, b, c = maps[0].a, maps[0].b, maps[0].c
    for m in maps[1:]:
        a, b, c = a * m.a, b * m.b, m.b * c + m.c * a
    return Mobius(a, b, c, False)


def mobius_optimum(m: Mobius) -> int:
    """Floor of the real optimum ``(√(a·b) − b) / c``; 0 when no input is profitable."""
    if m.a <= m.b or m.c <= 0:
        return 0
    return max(0, (math.isqrt(m.a * m.b) - m.b) // m.c)


def exact_curves(legs: Sequence[Leg]) -> list[Mobius] | None:
    """Every leg's swap curve when all of them are exact Möbius maps (V2), else ``None``."""
    curves: list[Mobius] = []
    for leg in legs:
        curve = leg.model.mobius(leg.state, leg.zero_for_one)
        if curve is None or not curve.exact:
            return None
        curves.append(curve)
    return curves
