"""Optimal input amount of a cycle, on exact integer pool math, maximising net profit.

All-V2 paths have a closed form.  Composing ``x -> a·x/(b + c·x)`` hops gives another Möbius map
``a = a1·a2, b = b1·b2, c = b2·c1 + c2·a1``; the real profit ``a·x/(b + c·x) − x`` peaks where
``(b + c·x)² = a·b``, i.e. ``x* = (√(a·b) − b) / c``, and is positive at the margin iff ``a > b``.
The contracts floor at every hop, so the real curve bounds the integer one from above; the
integer optimum is searched next to ``x*`` and proven against that bound (``_settle``).  Two-hop
cycles (the commonest) take a shorter road on bare integers (``_two_v2``): the bound on the
intermediate amount, ``T``, and a phase landing that reaches it, which proves the optimum.
Longer all-V2 cycles do the same on the last hop's input (``_multi_v2``): the first hops
compose into one Möbius map for the bound, the least input for a given ``z`` is a chain of
ceiling divisions, and the rounding phases (followed as straight lines between wraps when they
turn slowly, ``_slow_landings``) say which ``z`` to check; the rare cycle left unproven falls
back to ``_settle``.

Where a V3 hop meets a V2 hop, the float optimum is refined on exact evaluation (``_refine``):
the V3 hop's current range is itself an exact upper-bounding Möbius map (``PoolModel.bound``),
which gives ``T`` again, and landings of the V2 hop's rounding phase are tried until it is met.

Paths through V3 are piecewise Möbius (one piece per initialised tick range): the stationary
point of each piece is closed-form, the pieces are walked up to the gross optimum, and the
candidates (each piece's best, fewer ticks crossed = less gas) are evaluated exactly and
compared on net profit: each crossed tick costs gas, so the net optimum can be below the gross
one.  Paths the piecewise walk cannot describe (two legs crossing ticks) fall back to a
bracketed golden-section search over exact evaluation, then bisect the tick-count boundaries
below the gross optimum for the net one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mevstack.strategy.pools import Mobius, PoolModel, Segment, Trader

# Search tolerances, relative to the amount: a profit curve is flat at its optimum, so stopping
# within 1e-7 of the input costs far less than the 0.1% of profit the result is held to.
_GOLDEN_REL_TOL = 1e-7
_BOUNDARY_REL_SHIFT = 24  # bisection on tick boundaries stops within amount / 2**24
_MAX_TICK_LEVELS = 32
_DEFAULT_SEED = 10**15
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0
_PIECE_END_MARGIN = 1e-9  # stay this far inside a piece so its end does not cross the tick


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
    """The chosen amount: its exact evaluation and the objective (net, in native wei) there."""

    path: PathEval
    net: int


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


def _exact_curves(legs: Sequence[Leg]) -> list[Mobius] | None:
    """Every leg's swap curve when all of them are exact Möbius maps (V2), else ``None``."""
    curves: list[Mobius] = []
    for leg in legs:
        curve = leg.model.mobius(leg.state, leg.zero_for_one)
        if curve is None or not curve.exact:
            return None
        curves.append(curve)
    return curves


def _better(candidate: PathEval | None, best: PathEval | None) -> PathEval | None:
    if candidate is None:
        return best
    if best is None or candidate.gross_profit > best.gross_profit:
        return candidate
    if candidate.gross_profit == best.gross_profit and candidate.amount_in < best.amount_in:
        return candidate
    return best


_TWO_HOP_LANDINGS = 16  # phase landings tried on each side of the top (each a few int ops)


def _two_v2(first: Mobius, last: Mobius, cap: int | None) -> tuple[int, tuple[int, int]] | None:
    """The exact integer optimum of two V2 hops, proven, in a few integer operations.

    Work on the intermediate amount ``y``: the least input delivering ``y`` is ``⌈G(y)⌉``
    (``G``: the first hop's real inverse ``b1·y/(a1 − c1·y)``) and the output is ``⌊R(y)⌋``
    (``R``: the last hop).  Every input ``x`` gives some ``y = ⌊H(x)⌋`` with ``x >= ⌈G(y)⌉``,
    so no input earns more than ``T = max_y ⌊P(y)⌋``, ``P = R − G`` (concave, stationary at
    ``y*`` where ``√(a2·b2)·(a1 − c1·y) = √(a1·b1)·(b2 + c2·y)``; ``T`` is at ``⌊y*⌋`` or
    ``⌈y*⌉``).  ``⌊R⌋ − ⌈G⌉`` is ``⌊P⌋`` exactly when ``frac(R(y)) < frac(G(y))`` (or ``G(y)``
    is an integer) and ``⌊P⌋ − 1`` otherwise, so ``T`` is reached at a ``y`` on the plateau
    ``⌊P⌋ = T`` whose last-hop rounding ``frac(R(y))`` is small; on the plateau that phase
    turns by ``frac(R')`` per unit of ``y``, and ``_next_landing`` steps straight to the next
    ``y`` on each side where it is small.  Each landing is checked exactly; reaching ``T``
    proves the optimum.  ``None`` when it is not reached (the general ``_settle`` takes over),
    when no input is profitable, or when ``cap`` binds.
    """
    a1, b1, c1 = first.a, first.b, first.c
    a2, b2, c2 = last.a, last.b, last.c
    found = _top_parts(a1, b1, c1, a2, b2, c2)
    if found is None:
        return None
    y0, top, rest, d_g, d_r = found
    x = -(-(b1 * y0) // d_g)
    out0 = a2 * y0 // d_r
    if out0 - x < top:
        x = _two_v2_landing(a1, b1, c1, a2, b2, c2, y0, top, rest / (d_g * d_r), d_r)
        y0 = 0
    if x <= 0 or (cap is not None and x > cap):
        return None
    y = a1 * x // (b1 + c1 * x)
    return x, (y, out0 if y == y0 else a2 * y // (b2 + c2 * y))


def _top(a1: int, b1: int, c1: int, a2: int, b2: int, c2: int) -> tuple[int, int, float] | None:
    """``(y, T, frac(P(y)))`` at the integer top of ``P(y) = R(y) − G(y)`` (see ``_two_v2``):
    ``R = a2·y/(b2 + c2·y)`` the last hop, ``G = b1·y/(a1 − c1·y)`` the first one's inverse.
    ``None`` when no input is profitable.
    """
    found = _top_parts(a1, b1, c1, a2, b2, c2)
    if found is None:
        return None
    y0, top, rest, d_g, d_r = found
    return y0, top, rest / (d_g * d_r)


def _top_parts(
    a1: int, b1: int, c1: int, a2: int, b2: int, c2: int
) -> tuple[int, int, int, int, int] | None:
    """``_top`` with its working kept for the caller: ``(y, T, rest, d_g, d_r)`` where
    ``P(y) = T + rest / (d_g·d_r)``, ``d_g = a1 − c1·y`` and ``d_r = b2 + c2·y``.

    ``y* = (√(a2·b2)·a1 − √(a1·b1)·b2) / (√(a2·b2)·c1 + √(a1·b1)·c2)``; isqrt's flooring moves
    it by far less than half a unit, so the integer top is ``⌊y*⌋`` or ``⌊y*⌋ + 1`` (the
    brute-force test holds this on small pools, where it matters most).  Over one unit ``P``
    is a parabola to far better than an eighth of a unit, so when ``y*`` is not near a half
    the integer nearer to it is the top and only that one is evaluated.  There is no separate
    ``a1·a2 > b1·b2`` test: below it ``P <= 0`` everywhere (``R`` under its tangent at 0, ``G``
    above its own), which a negative ``y*`` or ``T <= 0`` reports.
    """
    s1, s2 = math.isqrt(a1 * b1), math.isqrt(a2 * b2)
    den_y = s2 * c1 + s1 * c2
    y0, rest = divmod(s2 * a1 - s1 * b2, den_y)
    if y0 < 1:
        if y0 < 0:
            return None
        y0, rest = 1, 0
    elif 8 * rest > 5 * den_y:
        y0, rest = y0 + 1, 0
    d_g, d_r = a1 - c1 * y0, b2 + c2 * y0
    if d_g <= 0:
        return None
    top, frac_num = divmod(y0 * (a2 * d_g - b1 * d_r), d_r * d_g)
    if 8 * rest >= 3 * den_y:  # y* near the middle: the other side may be the top
        y = y0 + 1
        d_g1, d_r1 = a1 - c1 * y, b2 + c2 * y
        if d_g1 > 0:
            top1, frac1 = divmod(y * (a2 * d_g1 - b1 * d_r1), d_r1 * d_g1)
            if top1 > top:
                y0, top, frac_num, d_g, d_r = y, top1, frac1, d_g1, d_r1
    return None if top <= 0 else (y0, top, frac_num, d_g, d_r)


def _two_v2_landing(
    a1: int, b1: int, c1: int, a2: int, b2: int, c2: int, y0: int, top: int, window: float,
    d_r: int,
) -> int:  # fmt: skip
    """The least input of the nearest ``y`` on either side of ``y0`` earning ``top`` (see
    ``_two_v2``; ``d_r = b2 + c2·y0``); 0 when none is found within ``_TWO_HOP_LANDINGS``
    landings a side."""
    phase0 = (1.0 - (a2 * y0 % d_r) / d_r) % 1.0  # frac(−R(y0))
    try:
        turn = (-(a2 / d_r) * (b2 / d_r)) % 1.0  # frac(−R'): its change per unit of y
    except OverflowError:  # a slope beyond float range: no phase to follow
        return 0
    # earning ⌊P⌋ needs frac(R) below frac(P), i.e. frac(−R) above 1 − frac(P) (or R whole)
    threshold = 1.0 - window if window > 1e-12 else 1.0 - 1e-12
    for sign, step in ((1, turn), (-1, (1.0 - turn) % 1.0)):
        d: int | None = 1
        for _ in range(_TWO_HOP_LANDINGS):
            d = _next_landing(phase0, step, threshold, d or 1)
            if d is None:
                break
            y = y0 + sign * d
            d_g = a1 - c1 * y
            if y <= 0 or d_g <= 0:
                break
            d_r = b2 + c2 * y
            x = -(-(b1 * y) // d_g)
            if a2 * y // d_r - x >= top:
                return x
            if (a2 * y * d_g - b1 * y * d_r) // (d_r * d_g) < top:
                break  # off the plateau: further landings on this side earn less
            d += 1
    return 0


def _multi_v2(curves: Sequence[Mobius], cap: int | None) -> tuple[int, list[int]] | None:
    """The exact integer optimum of three or more V2 hops, proven, on bare integers.

    As in ``_last_hop_phase``, but as the first and only road: with ``G`` the real inverse of
    the composed first hops and ``R`` the last hop, no input earns more than
    ``T = max ⌊R(z) − G(z)⌋`` over the last hop's input ``z`` (``_top``, at ``z0``).  The least
    input delivering ``z`` through the floored hops is a chain of ceiling divisions; landings
    of the rounding phases near ``z0`` are tried until one earns ``T``, which proves it the
    optimum.  ``None`` when ``T`` is reached neither in ``_PHASE_TRIES`` landings nor by
    ``_plateau_walk``, when ``cap`` binds, or when nothing is profitable (the general path
    then decides).
    """
    *firsts, last = curves
    a_p, b_p, c_p = 1, 1, 0  # the first hops composed (bare integers: this is the hot path)
    for a, b, c, _ in firsts:
        a_p, b_p, c_p = a_p * a, b_p * b, b * c_p + c * a_p
    a_k, b_k, c_k, _ = last
    found = _top_parts(a_p, b_p, c_p, a_k, b_k, c_k)
    if found is None:
        return None
    z0, top, rest, g_den, d_last = found
    inverse = firsts[::-1]

    def least(z: int) -> int:
        for a, b, c, _ in inverse:
            room = a - c * z
            if room <= 0:
                return 0
            z = -(-(z * b) // room)
        return z

    x = least(z0)
    if x <= 0 or a_k * z0 // d_last - x < top:
        x = 0
        try:
            window = rest / (g_den * d_last)
            phase0 = (z0 * b_p % g_den) / g_den  # frac(G(z0))
            scale = float(g_den)
            turn = (float(a_p) / scale * (float(b_p) / scale)) % 1.0  # frac(G'(z0))
        except (OverflowError, ZeroDivisionError):
            return None
        if len(curves) == 3:
            landings = _three_hop_landings(curves, z0, phase0, turn, window)
        else:
            landings = _landings(phase0, turn, 1.0 - window)
        for d in itertools.islice(landings, _PHASE_TRIES):
            z = z0 + d
            d_last, d_pre = b_k + c_k * z, a_p - c_p * z
            if d_pre <= 0 or z * (a_k * d_pre - b_p * d_last) // (d_last * d_pre) < top:
                break  # off the plateau: further landings earn less
            candidate = least(z)
            if candidate > 0 and a_k * z // d_last - candidate >= top:
                x = candidate
                break
        if x <= 0:
            x = _plateau_walk(z0, top, least, a_p, b_p, c_p, a_k, b_k, c_k)
        if x <= 0:
            return None
    if cap is not None and x > cap:
        return None
    outs: list[int] = []
    amount = x
    for a, b, c, _ in curves:
        amount = a * amount // (b + c * amount)
        outs.append(amount)
    return x, outs


_PLATEAU_WALK = 8  # z tried on each side of the top when no landing reached T


def _plateau_walk(
    z0: int,
    top: int,
    least: Callable[[int], int],
    a_p: int, b_p: int, c_p: int, a_k: int, b_k: int, c_k: int,
) -> int:  # fmt: skip
    """The least input of the nearest ``z`` around ``z0`` earning ``top``, every ``z`` tried
    while ``⌊P(z)⌋`` stays at ``top`` (small pools, where the plateau is short and the float
    phases coarse); 0 when none does within ``_PLATEAU_WALK`` a side."""
    for sign in (1, -1):
        for k in range(1, _PLATEAU_WALK + 1):
            z = z0 + sign * k
            d_last, d_pre = b_k + c_k * z, a_p - c_p * z
            if z <= 0 or d_pre <= 0:
                break
            if (a_k * z * d_pre - b_p * z * d_last) // (d_last * d_pre) < top:
                break
            x = least(z)
            if x > 0 and a_k * z // d_last - x >= top:
                return x
    return 0


def _exact_closed_form(
    curves: Sequence[Mobius], m: Mobius, x_star: int, cap: int | None, phase_tried: bool = False
) -> tuple[int, list[int]] | None:
    """The integer optimum next to ``x*`` for paths of exact Möbius hops (V2), on bare
    integers, avoiding per-hop objects.  ``phase_tried``: ``_multi_v2`` already searched the
    last hop's phase landings in vain, so ``_settle`` does not search them again."""

    def run(x: int) -> list[int] | None:
        outs: list[int] = []
        for m in curves:
            x = m.a * x // (m.b + m.c * x)
            if x <= 0:
                return None
            outs.append(x)
        return outs

    def least(y: int) -> int | None:
        # floor(a·x/(b + c·x)) >= y  <=>  x·(a − c·y) >= y·b
        for m in reversed(curves):
            room = m.a - m.c * y
            if room <= 0:
                return None
            y = -(-y * m.b // room)
        return y

    x0 = x_star if cap is None else min(x_star, cap)
    if x0 <= 0:
        return None
    outs0 = run(x0)
    if outs0 is None:
        return None

    def capped(x0: int, outs0: list[int]) -> tuple[int, list[int]]:
        # capped below the optimum: profit rises up to the cap; buy the cap's output for less
        x = least(outs0[-1])
        if x is not None and 0 < x < x0:
            outs = run(x)
            if outs is not None and outs[-1] - x >= outs0[-1] - x0:
                return x, outs
        return x0, outs0

    if cap is not None and cap <= x_star:
        return capped(x0, outs0)
    found = _settle(run, curves, m, x_star, x0, outs0, phase_tried)
    if cap is not None and found[0] > cap:  # the integer optimum lies just past the cap
        outs_cap = run(cap)
        return None if outs_cap is None else capped(cap, outs_cap)
    return found


_SETTLE_SCAN_LIMIT = 100_000
_SETTLE_SAMPLES = 32
_PHASE_TRIES = 6
_INNER_LANDINGS = 256


def _settle(
    run: Callable[[int], list[int] | None],
    curves: Sequence[Mobius],
    m: Mobius,
    x_star: int,
    best_x: int,
    best_outs: list[int],
    phase_tried: bool = False,
) -> tuple[int, list[int]]:
    """Reach the integer optimum, or prove the 0.1 % bound.

    1. No integer input beats ``U = max(⌊F(x*)⌋ − x*, ⌊F(x*+1)⌋ − x* − 1)`` (the integer path is
       at most the real curve, whose profit is concave): ``x*`` reaching ``U`` is the optimum.
    2. Otherwise a search by the last hop's input (``_last_hop_phase``) tightens the bound to
       ``T`` and usually reaches it (always, in practice, for two hops); after ``phase_tried``
       only ``T`` is taken (``_top``), the landings having been searched already.
    3. Otherwise well-spread inputs among those whose real profit is at least the bound (an
       interval: the roots of a quadratic) are tried; reaching it proves the optimum.
    4. Failing that, being within 0.1 % of the bound proves the promise; for tiny profits (one
       unit more than 0.1 %) every input of the interval is tried, when it is small enough.
    """
    best_profit = best_outs[-1] - best_x
    bound = max(m.a * x // (m.b + m.c * x) - x for x in (x_star, x_star + 1))
    if best_profit >= bound:
        return best_x, best_outs
    if phase_tried:
        pre, last = compose(curves[:-1]), curves[-1]
        top = _top(pre.a, pre.b, pre.c, last.a, last.b, last.c)
        if top is not None:
            bound = min(bound, top[1])
    else:
        best_x, best_outs, bound = _last_hop_phase(run, curves, best_x, best_outs, bound)
    best_profit = best_outs[-1] - best_x
    if best_profit >= bound:
        return best_x, best_outs
    lo, hi = _profit_interval(m, bound)
    width = hi - lo
    for k in range(_SETTLE_SAMPLES):
        x = lo + int(((0.5 + k * _INV_PHI) % 1.0) * width)
        outs = run(x) if x > 0 else None
        if outs is not None and outs[-1] - x > best_profit:
            best_x, best_outs, best_profit = x, outs, outs[-1] - x
            if best_profit >= bound:
                return best_x, best_outs
    if best_profit * 1000 >= bound * 999:
        return best_x, best_outs
    lo, hi = _profit_interval(m, best_profit + 1)
    if hi - lo <= _SETTLE_SCAN_LIMIT:
        for x in range(max(lo, 1), hi + 1):
            outs = run(x)
            if outs is not None and outs[-1] - x > best_profit:
                best_x, best_outs, best_profit = x, outs, outs[-1] - x
    return best_x, best_outs


def _last_hop_phase(
    run: Callable[[int], list[int] | None],
    curves: Sequence[Mobius],
    best_x: int,
    best_outs: list[int],
    bound: int,
) -> tuple[int, list[int], int]:
    """Search by the last hop's input ``z``, where the bound is tighter and its reach predictable.

    For a given ``z`` the best input is the least one delivering ``z`` through the first hops,
    ``⌈G(z)⌉`` (``G``: their real inverse), and the profit is ``⌊R(z)⌋ − ⌈G(z)⌉`` (``R``: the
    last hop).  With ``P = R − G`` (concave) that is ``⌊P(z)⌋`` exactly when
    ``frac(G(z)) >= 1 − frac(P(z))`` and one less otherwise, so ``T = max ⌊P⌋`` bounds every
    integer input.  Near the top ``P`` is flat while ``frac(G)`` turns by ``frac(G')`` per unit
    of ``z``: the next ``z`` whose phase lands in the window is found by stepping the phase (a
    jump when it turns slowly), then checked exactly.  With three hops the first hops' own
    rounding can still cost a unit, so several landings are tried.
    Returns the best found and ``T`` (the tighter bound).
    """
    if len(curves) < 2:
        return best_x, best_outs, bound
    pre = compose(curves[:-1])
    last = curves[-1]
    a_p, b_p, c_p = pre.a, pre.b, pre.c
    a_k, b_k, c_k = last.a, last.b, last.c

    def p_parts(z: int) -> tuple[int, int] | None:
        d_last, d_pre = b_k + c_k * z, a_p - c_p * z
        if z <= 0 or d_pre <= 0:
            return None
        return a_k * z * d_pre - b_p * z * d_last, d_last * d_pre

    def least_pre(z: int) -> int | None:
        for m in reversed(curves[:-1]):
            room = m.a - m.c * z
            if room <= 0:
                return None
            z = -(-z * m.b // room)
        return z

    # P'(z) = 0  <=>  √(a_k·b_k)·(a_p − c_p·z) = √(a_p·b_p)·(b_k + c_k·z)
    s_k, s_p = math.isqrt(a_k * b_k), math.isqrt(a_p * b_p)
    denominator = s_k * c_p + s_p * c_k
    if denominator <= 0:
        return best_x, best_outs, bound
    z_mid = (s_k * a_p - s_p * b_k) // denominator
    top: tuple[int, int] | None = None  # (⌊P(z)⌋, z) at the best integer z
    for z in (z_mid - 1, z_mid, z_mid + 1):
        parts = p_parts(z)
        if parts is not None and (top is None or parts[0] // parts[1] > top[0]):
            top = (parts[0] // parts[1], z)
    if top is None:
        return best_x, best_outs, bound
    target, z0 = min(bound, top[0]), top[1]
    best_profit = best_outs[-1] - best_x
    if best_profit >= target:
        return best_x, best_outs, target
    num0, den0 = p_parts(z0) or (0, 1)
    window = (num0 % den0) / den0  # frac(P) at the top: the phase window's width
    g_den = a_p - c_p * z0
    if g_den <= 0:
        return best_x, best_outs, target
    phase0 = (z0 * b_p % g_den) / g_den  # frac(G(z0))
    try:
        turn = (a_p * b_p / (g_den * g_den)) % 1.0  # frac(G'(z0))
    except OverflowError:
        return best_x, best_outs, target
    if len(curves) == 3:
        landings = _three_hop_landings(curves, z0, phase0, turn, window)
    else:
        landings = _landings(phase0, turn, 1.0 - window)
    for d in itertools.islice(landings, _PHASE_TRIES):
        parts = p_parts(z0 + d)
        if parts is None or parts[0] // parts[1] < target:
            break
        x = least_pre(z0 + d)
        outs = run(x) if x is not None and x > 0 else None
        if x is not None and outs is not None and outs[-1] - x > best_profit:
            best_x, best_outs, best_profit = x, outs, outs[-1] - x
            if best_profit >= target:
                break
    return best_x, best_outs, target


def _landings(phase0: float, turn: float, threshold: float) -> Iterator[int]:
    """Successive ``d >= 0`` with ``frac(phase0 + turn·d) >= threshold``."""
    d: int | None = 0
    while d is not None:
        d = _next_landing(phase0, turn, threshold, d)
        if d is not None:
            yield d
            d += 1


def _three_hop_landings(
    curves: Sequence[Mobius], z0: int, phase0: float, turn: float, window: float
) -> Iterator[int]:
    """Offsets of ``z`` where both roundings of a three-hop path's first two hops are cheap.

    The least input for ``z`` is ``⌈G1(⌈G2(z)⌉)⌉``: with ``A = frac(G1∘G2(z))`` and the inner
    round-up ``e = ⌈G2(z)⌉ − G2(z)``, the bound ``T`` is reached when ``A >= 1 − frac(P)`` and
    ``G1'·e <= 1 − A``.  Both phases turn linearly with ``z``: walk the landings of the inner
    one (``e`` small) and yield those where the outer one is in its window too (floats; every
    yield is checked exactly by the caller).
    """
    (a1, b1, c1, _), (a2, b2, c2, _) = curves[0], curves[1]
    den_mid = a2 - c2 * z0
    if den_mid <= 0:
        return
    try:
        inner0 = (z0 * b2 % den_mid) / den_mid  # frac(G2(z0))
        # the slopes need no exact integers (floats of O(1) values): plain floats are 3x cheaper
        f_den = float(den_mid)
        inner_turn = (float(a2) / f_den * (float(b2) / f_den)) % 1.0
        f_a1 = float(a1)
        den_first = f_a1 - float(c1) * (float(z0) * float(b2) / f_den)
        slope = f_a1 / den_first * (float(b1) / den_first) if den_first > 0 else math.inf
    except OverflowError:
        return
    if not math.isfinite(slope) or slope <= 0:
        return
    rate_in = inner_turn if inner_turn <= 0.5 else inner_turn - 1.0
    rate_out = turn if turn <= 0.5 else turn - 1.0
    if abs(rate_in) < _SLOW_TURN and abs(rate_out) < _SLOW_TURN:
        yield from _slow_landings(inner0, rate_in, phase0, rate_out, slope, window)
        return
    room = window / slope  # the largest inner round-up that can still reach T
    threshold, outer_floor = 1.0 - room, 1.0 - window
    d: int | None = 0
    for _ in range(_INNER_LANDINGS):
        d = _next_landing(inner0, inner_turn, threshold, d or 0)
        if d is None:
            return
        current = (inner0 + (inner_turn * d) % 1.0) % 1.0
        outer = (phase0 + (turn * d) % 1.0) % 1.0
        if outer >= outer_floor and slope * (1.0 - current) <= 1.0 - outer:
            yield d
        d += 1


_SLOW_TURN = 0.1  # phases turning less than this per unit of z are followed as straight lines
# Steps of the straight-line walk: each skips a whole run of failing ``z``, so few are needed;
# the rare cycle still unproven after them is cheaper settled by ``_settle``'s later stages.
_SLOW_LANDINGS = 64


def _slow_landings(
    inner0: float, rate_in: float, outer0: float, rate_out: float, slope: float, window: float
) -> Iterator[int]:
    """``_three_hop_landings`` when both phases turn slowly (the common case on deep pools).

    Between wraps both phases are linear in ``d``, so the two conditions
    ``g1 = outer − (1 − window) >= 0`` and ``g2 = 1 − outer − slope·(1 − inner) >= 0`` are too:
    from a ``d`` that fails, each failing condition keeps failing until its linear crossing or
    a wrap that lifts it, so the walk jumps to the latest of those instead of stepping through
    runs of ``d`` that fail (floats: every yield is checked exactly by the caller).
    """
    floor_out = 1.0 - window
    rate_g2 = slope * rate_in - rate_out
    inner, outer = inner0 % 1.0, outer0 % 1.0
    d = 0
    for _ in range(_SLOW_LANDINGS):
        g1 = outer - floor_out
        g2 = 1.0 - outer - slope * (1.0 - inner)
        if g1 >= 0.0 and g2 >= 0.0:
            yield d
            step = 1
        else:
            # A failing condition keeps failing until its linear crossing or a wrap that
            # lifts it (the outer phase wrapping up for g1; it wrapping down, or the inner one
            # up, for g2); wraps the other way only push it further.  Jump to the latest of
            # those first chances.
            jump = 0.0
            if g1 < 0.0:
                if rate_out > 0.0:
                    jump = math.floor(-g1 / rate_out)
                elif rate_out < 0.0:
                    jump = math.floor(outer / -rate_out) + 1
                else:
                    return
            if g2 < 0.0:
                chance = math.floor(-g2 / rate_g2) if rate_g2 > 0.0 else math.inf
                if rate_out > 0.0:
                    chance = min(chance, math.floor((1.0 - outer) / rate_out) + 1)
                if rate_in < 0.0:
                    chance = min(chance, math.floor(inner / -rate_in) + 1)
                if chance == math.inf:
                    return
                jump = max(jump, chance)
            step = max(1, int(jump))
        d += step
        # phases advanced from where they are (drift is harmless: yields are checked exactly)
        inner = (inner + (rate_in * step) % 1.0) % 1.0
        outer = (outer + (rate_out * step) % 1.0) % 1.0


def _next_landing(phase0: float, turn: float, threshold: float, d: int) -> int | None:
    """The least ``e >= d`` with ``frac(phase0 + turn·e) >= threshold`` (float, then checked)."""
    current = (phase0 + (turn * d) % 1.0) % 1.0
    if current >= threshold:
        return d
    if 0.0 < turn < 1.0 - threshold:  # turning up slowly: jump straight into the window
        return d + math.ceil((threshold - current) / turn)
    found = _first_multiple_in(turn, 1.0, threshold - current, 1.0 - current)
    return None if found is None else d + found


_EUCLID_DEPTH = 48


def _first_multiple_in(step: float, modulus: float, low: float, high: float) -> int | None:
    """The least ``k >= 1`` with ``low <= (step·k) mod modulus < high``, for
    ``0 < step < modulus`` and ``0 < low < high <= modulus`` (``None`` when floats cannot tell).

    Euclid on the rotation: when no multiple of ``step`` lies in the window before the first
    wrap, the hit comes after some ``y`` wraps, with ``step·k − modulus·y`` in the window:
    ``(−modulus·y) mod step`` in ``[low mod step, high mod step)`` (no multiple of ``step`` in
    the window, so that interval does not wrap).  That is the same question one level down,
    whose least ``y`` gives the least ``k``; the rotation taken there is ``modulus mod step``
    or its complement, whichever is smaller (the window mirrored for the former), so the
    levels shrink like Euclid's: O(log) levels where stepping the phase would take
    ``1/(high − low)`` steps.  Floats: callers check every landing exactly.
    """
    if not 0.0 < step < modulus:
        return None
    levels: list[tuple[float, float, float]] = []  # (step, modulus, low) to undo the wraps
    k = 0
    for _ in range(_EUCLID_DEPTH):
        k = math.ceil(low / step)
        if step * k < high:
            break
        levels.append((step, modulus, low))
        rest = modulus % step
        low, high = low % step, high % step
        if low == 0.0:  # the window starts on a multiple of ``step``: no wrap count needed
            k = 0
            break
        if high <= low:
            return None
        if rest <= 0.5 * step:  # (modulus·y) mod step in the mirrored window
            step, modulus, low, high = rest, step, step - high, step - low
        else:
            step, modulus = step - rest, step
        if step <= 0.0 or low <= 0.0:
            return None
    else:
        return None
    for step, modulus, low in reversed(levels):
        k = math.ceil((low + modulus * k) / step)
    return k if k >= 1 else None


def _profit_interval(m: Mobius, profit: int) -> tuple[int, int]:
    """Integers around the inputs whose real profit ``F(x) − x`` is at least ``profit``.

    ``a·x/(b + c·x) − x >= p  <=>  c·x² + (b + c·p − a)·x + b·p <= 0``; one unit of slack on
    each side absorbs the integer square root's rounding.
    """
    lin = m.b + m.c * profit - m.a
    disc = lin * lin - 4 * m.c * m.b * profit
    if disc < 0:
        return 1, 0
    root = math.isqrt(disc)
    return max(0, (-lin - root) // (2 * m.c) - 1), (-lin + root) // (2 * m.c) + 2


def _profit(legs: Sequence[Leg], x: int, cache: dict[int, PathEval | None]) -> int:
    if x not in cache:
        cache[x] = evaluate(legs, x)
    at = cache[x]
    return at.gross_profit if at is not None else -(1 << 255)


def _gross_search(
    legs: Sequence[Leg], seed: int, cap: int | None, cache: dict[int, PathEval | None]
) -> PathEval | None:
    """Golden-section search for the gross optimum over exact evaluation, after bracketing."""
    mid = max(1, seed if cap is None else min(seed, cap))
    f_mid = _profit(legs, mid, cache)
    shrinks = 0
    while f_mid <= 0 and mid > 1 and shrinks < 40:
        mid //= 4
        f_mid = _profit(legs, max(mid, 1), cache)
        shrinks += 1
    mid = max(mid, 1)
    if f_mid <= 0:
        return None
    lo = mid // 2
    hi = mid * 2 if cap is None else min(mid * 2, cap)
    while hi > mid and _profit(legs, hi, cache) > f_mid:
        lo, mid, f_mid = mid, hi, _profit(legs, hi, cache)
        hi = mid * 2 if cap is None else min(mid * 2, cap)
    # unimodal on [lo, hi] with f(mid) at least f(lo) and f(hi)
    x1 = hi - int((hi - lo) * _INV_PHI)
    x2 = lo + int((hi - lo) * _INV_PHI)
    while hi - lo > max(3, int(hi * _GOLDEN_REL_TOL)):
        if _profit(legs, x1, cache) >= _profit(legs, x2, cache):
            hi = x2
        else:
            lo = x1
        x1 = hi - int((hi - lo) * _INV_PHI)
        x2 = lo + int((hi - lo) * _INV_PHI)
    for x in (lo, x1, x2, hi) if hi - lo > 3 else range(lo, hi + 1):
        _profit(legs, x, cache)
    best: PathEval | None = None
    for at in cache.values():
        best = _better(at, best)
    return best if best is not None and best.gross_profit > 0 else None


def _tick_boundaries(
    legs: Sequence[Leg], top: PathEval, cache: dict[int, PathEval | None]
) -> list[PathEval]:
    """For each tick count below ``top``'s, (about) the largest input that crosses fewer ticks."""
    found: list[PathEval] = []
    hi, ticks = top.amount_in, top.total_ticks
    while ticks > 0 and len(found) < _MAX_TICK_LEVELS:
        lo = 0
        while hi - lo > max(1, hi >> _BOUNDARY_REL_SHIFT):
            mid = (lo + hi) // 2
            _profit(legs, mid, cache)
            at = cache[mid]
            if at is not None and at.total_ticks < ticks:
                lo = mid
            else:
                hi = mid
        if lo <= 0:
            break
        _profit(legs, lo, cache)
        below = cache[lo]
        if below is None:
            break
        found.append(below)
        hi, ticks = lo, below.total_ticks
    return found


def _piecewise(legs: Sequence[Leg], cap: int | None) -> tuple[list[int], bool] | None:
    """Candidate inputs from the piecewise-Möbius shape of the path (floats, to be verified).

    Every leg but one must be a single piece over the inputs that matter (V2, or V3 within
    range); the remaining leg ``j`` is walked piece by piece.  With ``p`` the legs before ``j``
    (a Möbius map) and ``q`` the legs after it, the profit over the piece of leg ``j`` starting
    at input ``I`` and output ``O`` is ``q(O + a·v/(b + c·v)) − p⁻¹(I + v)``; both terms are
    Möbius maps in ``v``, so the stationary point solves a linear equation.  Profit is concave
    (every swap curve is), so the walk stops at the first piece containing its stationary point
    (the gross optimum); each earlier piece contributes its end (fewer ticks crossed, less gas).
    Returns the candidates and whether the walk reached the gross optimum; ``None`` when two or
    more legs are piecewise over the range (then the generic search runs).
    """
    firsts: list[Segment] = []
    walk: tuple[int, Segment, Iterator[Segment]] | None = None
    for j, leg in enumerate(legs):
        pieces = leg.model.segments(leg.state, leg.zero_for_one)
        first = next(pieces, None)
        if first is None:
            return [], True
        if first.width != math.inf:
            if walk is not None:
                return None
            walk = (j, first, pieces)
        firsts.append(first)
    if walk is None:
        walk = (0, firsts[0], iter(()))
    j, first, rest = walk
    a1, b1, c1 = _compose_floats(firsts[:j])
    a2, b2, c2 = _compose_floats(firsts[j + 1 :])
    slope_pre = math.sqrt(b1 * a1)
    candidates: list[int] = []
    for piece in itertools.chain((first,), rest):
        o, start, a, b, c = piece.start_out, piece.start_in, piece.a, piece.b, piece.c
        gamma = b2 * c + c2 * (o * c + a)
        delta = b2 * b + c2 * o * b
        slope_post = math.sqrt(a2 * b * a * b2)
        v = (slope_post * (a1 - c1 * start) - slope_pre * delta) / (
            slope_post * c1 + slope_pre * gamma
        )
        if not math.isfinite(v):
            return None  # beyond float range: let the exact search handle it
        inside = v < piece.width
        v = min(max(v, 0.0), piece.width * (1.0 - _PIECE_END_MARGIN))
        u = start + v
        if c1 * u >= a1:
            return candidates, True  # the legs before cannot deliver this much
        x_real = b1 * u / (a1 - c1 * u)
        if not math.isfinite(x_real):
            return None
        x = int(x_real)
        if cap is not None and x >= cap:
            candidates.append(cap)
            return candidates, True
        candidates.append(x)
        if inside:
            return candidates, True
    return candidates, False


def _compose_floats(pieces: Sequence[Segment]) -> tuple[float, float, float]:
    a, b, c = 1.0, 1.0, 0.0  # identity
    for m in pieces:
        a, b, c = a * m.a, b * m.b, m.b * c + m.c * a
    return a, b, c


def optimise(legs: Sequence[Leg], net: NetFn, *, cap: int | None = None) -> Sized | None:
    """The input maximising ``net`` (native-wei profit after gas) over exact evaluation.

    ``net`` values a path evaluation (``None``: it cannot be valued); ``cap`` bounds the input.
    Returns ``None`` when no amount has a positive gross profit.
    """
    if cap is not None and cap <= 0:
        return None
    if len(legs) == 2:  # the commonest cycle: skip the general bookkeeping
        first, last = legs
        m1 = first.model.mobius(first.state, first.zero_for_one)
        m2 = last.model.mobius(last.state, last.zero_for_one)
        if m1 is not None and m2 is not None and m1.exact and m2.exact:
            fast = _two_v2(m1, m2, cap)
            if fast is not None:
                at = PathEval(fast[0], fast[1], (0, 0))
                value = net(at)
                return None if value is None else Sized(at, value)
    curves = _exact_curves(legs)
    if curves is not None:
        multi = _multi_v2(curves, cap) if len(curves) > 2 else None
        if multi is not None:
            at = PathEval(multi[0], tuple(multi[1]), (0,) * len(legs))
            value = net(at)
            return None if value is None else Sized(at, value)
        composed = compose(curves)
        x_star = mobius_optimum(composed)
        if x_star <= 0:
            return None
        found = _exact_closed_form(
            curves, composed, x_star, cap, phase_tried=len(curves) > 2 and cap is None
        )
        if found is None or found[1][-1] <= found[0]:
            return None
        at = PathEval(found[0], tuple(found[1]), (0,) * len(legs))
        value = net(at)
        return None if value is None else Sized(at, value)
    seed = _DEFAULT_SEED
    shape = _piecewise(legs, cap)
    if shape is not None:
        candidates, complete = shape
        chosen = _best_net(legs, candidates, net)
        if complete or chosen is None:
            if chosen is None or chosen.path.gross_profit <= 0:
                return None
            return _refine(legs, chosen, net, cap)
        seed = chosen.path.amount_in
    cache: dict[int, PathEval | None] = {}
    gross = _gross_search(legs, seed, cap, cache)
    if gross is None:
        return None
    chosen = _best_net(
        legs, [c.amount_in for c in [gross, *_tick_boundaries(legs, gross, cache)]], net
    )
    return None if chosen is None else _refine(legs, chosen, net, cap)


def _best_net(legs: Sequence[Leg], amounts: Sequence[int], net: NetFn) -> Sized | None:
    chosen: Sized | None = None
    for amount in dict.fromkeys(amounts):
        at = evaluate(legs, amount)
        if at is None or at.gross_profit <= 0:
            continue
        value = net(at)
        if value is not None and (chosen is None or value > chosen.net):
            chosen = Sized(at, value)
    return chosen


_REFINE_WINDOW = 0.125  # a V2 hop's rounding loss (in units) a landing may leave
# Landings gathered on each side of the candidate, and how many of them (least loss first)
# are quoted exactly: few when nothing tells whether more would help, more when a proven
# bound is not reached yet (the search stops as soon as it is).
_REFINE_LANDINGS = 4
_REFINE_TRIES = 5
_REFINE_LANDINGS_TO_BOUND = 12
_REFINE_TRIES_TO_BOUND = 24


def _refine(legs: Sequence[Leg], chosen: Sized, net: NetFn, cap: int | None) -> Sized:
    """Settle a two-hop path with one V2 hop on the integer optimum next to ``chosen``.

    The float search lands on the plateau of the real profit, where the integer profit is
    ``⌊P⌋`` or ``⌊P⌋ − 1`` depending only on how much the hops lose to rounding.  Choosing the
    intermediate amount ``y`` (first hop's output) directly, the V2 hop's loss is exact and
    cheap: ``⌈G(y)⌉ − G(y)`` when it is the first hop (``x = ⌈G(y)⌉`` is the least input
    delivering ``y``), ``frac(R(y))`` when it is the last.  That loss turns by ``frac`` of the
    hop's slope per unit of ``y``, so the nearest ``y`` on each side with a small loss are
    found by stepping the phase (``_next_landing``), scored with one quote of the other hop,
    and the best is evaluated forward; it replaces ``chosen`` only when its net is higher.
    Bounded work: at most ``_REFINE_TRIES`` quotes and one evaluation.
    """
    if len(legs) != 2:
        return chosen
    first, second = legs
    curve = first.model.mobius(first.state, first.zero_for_one)
    on_first = curve is not None and curve.exact
    if not on_first:
        curve = second.model.mobius(second.state, second.zero_for_one)
        if curve is None or not curve.exact:
            return chosen
    assert curve is not None
    target = _refine_target(legs, chosen)
    if target is not None and chosen.path.gross_profit >= target:
        return chosen
    y0 = chosen.path.amounts_out[0]
    a, b, c = curve.a, curve.b, curve.c

    def loss(y: int) -> float | None:
        if on_first:  # ⌈G(y)⌉ − G(y), G(y) = b·y / (a − c·y)
            den = a - c * y
            if y <= 0 or den <= 0:
                return None
            rest = b * y % den
            return 0.0 if rest == 0 else (den - rest) / den
        den = b + c * y  # frac(R(y)), R(y) = a·y / (b + c·y)
        return None if y <= 0 else (a * y % den) / den

    # phase ψ with ψ >= 1 − w  <=>  loss <= w (ψ = frac(G) first, 1 − frac(R) last)
    den0 = a - c * y0 if on_first else b + c * y0
    if den0 <= 0:
        return chosen
    try:
        slope = a * b / (den0 * den0) if on_first else -(a * b / (den0 * den0))
    except OverflowError:
        return chosen
    loss0 = loss(y0)
    if loss0 is None or not math.isfinite(slope):
        return chosen
    phase0 = (1.0 - loss0) % 1.0
    turn = slope % 1.0

    def gather(count: int) -> list[tuple[float, int]]:
        """Up to ``count`` landings a side, as (exact loss, y)."""
        found: list[tuple[float, int]] = []
        for sign, step in ((1, turn), (-1, (-turn) % 1.0)):
            d: int | None = 0
            for _ in range(count):
                d = _next_landing(phase0, step, 1.0 - _REFINE_WINDOW, d or 0)
                if d is None:
                    break
                if 0.0 < step < 0.5:
                    # a slow upward turn: the landing opens a run of ``y`` in the window whose
                    # last one loses least; one per run keeps the other hop's phases spread
                    current = (phase0 + (step * d) % 1.0) % 1.0
                    d += max(0, math.floor((1.0 - current) / step - 1e-9))
                y = y0 + sign * d
                exact = loss(y)
                if exact is not None:
                    found.append((exact, y))
                d += 1
        return found

    leg = second if on_first else first
    other = leg.model.trader(leg.state, leg.zero_for_one)
    best_profit, best_x = chosen.path.gross_profit, 0
    tried: set[int] = set()
    rounds = [(_REFINE_LANDINGS, _REFINE_TRIES)]
    if target is not None:  # worth a wider look only while the bound is not reached
        rounds.append((_REFINE_LANDINGS_TO_BOUND, _REFINE_TRIES_TO_BOUND))
    for landings, tries in rounds:
        if target is not None and best_profit >= target:
            break
        for _, y in sorted(set(gather(landings)))[:tries]:
            if y in tried:
                continue
            tried.add(y)
            if on_first:
                x = -(-(b * y) // (a - c * y))
                traded = other(y)
                out = None if traded is None else traded[1]
            else:
                traded = other(-y)
                x = 0 if traded is None else traded[0]
                out = a * y // (b + c * y)
            if out is not None and x > 0 and (cap is None or x <= cap) and out - x > best_profit:
                best_profit, best_x = out - x, x
                if target is not None and best_profit >= target:
                    break
    if best_x <= 0:
        return chosen
    at = _forward_two(a, b, c, on_first, other, best_x)
    if at is None:
        return chosen
    value = net(at)
    if value is None or value <= chosen.net:
        return chosen
    return Sized(at, value)


def _forward_two(a: int, b: int, c: int, on_first: bool, other: Trader, x: int) -> PathEval | None:
    """``evaluate`` of a two-hop path with one V2 hop ``(a, b, c)``, the other through its
    trader (the steps it has walked already are not walked again)."""
    if on_first:
        y = a * x // (b + c * x)
        traded = other(y) if y > 0 else None
        if traded is None:
            return None
        return PathEval(x, (y, traded[1]), (0, traded[2]))
    traded = other(x)
    if traded is None:
        return None
    out = a * traded[1] // (b + c * traded[1])
    return PathEval(x, (traded[1], out), (traded[2], 0)) if out > 0 else None


def _refine_target(legs: Sequence[Leg], chosen: Sized) -> int | None:
    """The most any input can earn gross, when ``chosen`` crosses no tick and the real optimum
    lies inside both hops' current ranges (``None`` otherwise).

    Each hop's exact output is at most its ``bound`` curve, so with the first hop's bound
    inverted as ``G`` and the last one's as ``R``, ``T = max ⌊R − G⌋`` bounds every input the
    way it does for two V2 hops (``_two_v2``); beyond a range the real curve changes, but the
    real profit is concave, so a top inside the ranges is the top of the whole curve.
    """
    if chosen.path.total_ticks:
        return None
    first, second = legs
    b_first = first.model.bound(first.state, first.zero_for_one)
    b_second = second.model.bound(second.state, second.zero_for_one)
    if b_first is None or b_second is None:
        return None
    m1, m2 = b_first.curve, b_second.curve
    found = _top(m1.a, m1.b, m1.c, m2.a, m2.b, m2.c)
    if found is None:
        return None
    y = found[0] + 1
    room = m1.a - m1.c * y
    if room <= 0 or (b_second.reach is not None and y >= b_second.reach):
        return None
    if b_first.reach is not None and -(-(m1.b * y) // room) + 1 >= b_first.reach:
        return None
    return found[1]
