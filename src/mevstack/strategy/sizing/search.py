"""The optimum of paths through V3 pools: piecewise curves, exact refinement, net of tick gas.

Paths through V3 are piecewise Möbius (one piece per initialised tick range): the stationary
point of each piece is closed-form, the pieces are walked up to the gross optimum, and the
candidates (each piece's best, fewer ticks crossed = less gas) are evaluated exactly and
compared on net profit: each crossed tick costs gas, so the net optimum can be below the gross
one (``piecewise``).  Paths the piecewise walk cannot describe (two legs crossing ticks) fall
back to a bracketed golden-section search over exact evaluation, then bisect the tick-count
boundaries below the gross optimum for the net one (``gross_search``, ``tick_boundaries``).
Where a V3 hop meets a V2 hop, the float optimum is refined on exact evaluation (``refine``):
the V3 hop's current range is itself an exact upper-bounding Möbius map (``PoolModel.bound``),
which gives the bound ``T`` as for two V2 hops, and landings of the V2 hop's rounding phase are
tried until it is met.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

from mevstack.strategy.pools import Segment, Trader
from mevstack.strategy.sizing.closed_form import profit_top
from mevstack.strategy.sizing.path import (
    INV_PHI,
    Evaluator,
    Leg,
    NetFn,
    PathEval,
    Sized,
)
from mevstack.strategy.sizing.phases import next_landing

# Search tolerances, relative to the amount: a profit curve is flat at its optimum, so stopping
# within 1e-7 of the input costs far less than the 0.1% of profit the result is held to.
_GOLDEN_REL_TOL = 1e-7


_BOUNDARY_REL_SHIFT = 24  # bisection on tick boundaries stops within amount / 2**24


_MAX_TICK_LEVELS = 32


_PIECE_END_MARGIN = 1e-9  # stay this far inside a piece so its end does not cross the tick


def _better(candidate: PathEval | None, best: PathEval | None) -> PathEval | None:
    if candidate is None:
        return best
    if best is None or candidate.gross_profit > best.gross_profit:
        return candidate
    if candidate.gross_profit == best.gross_profit and candidate.amount_in < best.amount_in:
        return candidate
    return best


def _profit(path: Evaluator, x: int, cache: dict[int, PathEval | None]) -> int:
    if x not in cache:
        cache[x] = path(x)
    at = cache[x]
    return at.gross_profit if at is not None else -(1 << 255)


def gross_search(
    path: Evaluator, seed: int, cap: int | None, cache: dict[int, PathEval | None]
) -> PathEval | None:
    """Golden-section search for the gross optimum over exact evaluation, after bracketing."""
    mid = max(1, seed if cap is None else min(seed, cap))
    f_mid = _profit(path, mid, cache)
    shrinks = 0
    while f_mid <= 0 and mid > 1 and shrinks < 40:
        mid //= 4
        f_mid = _profit(path, max(mid, 1), cache)
        shrinks += 1
    mid = max(mid, 1)
    if f_mid <= 0:
        return None
    lo = mid // 2
    hi = mid * 2 if cap is None else min(mid * 2, cap)
    while hi > mid and _profit(path, hi, cache) > f_mid:
        lo, mid, f_mid = mid, hi, _profit(path, hi, cache)
        hi = mid * 2 if cap is None else min(mid * 2, cap)
    # unimodal on [lo, hi] with f(mid) at least f(lo) and f(hi)
    x1 = hi - int((hi - lo) * INV_PHI)
    x2 = lo + int((hi - lo) * INV_PHI)
    while hi - lo > max(3, int(hi * _GOLDEN_REL_TOL)):
        if _profit(path, x1, cache) >= _profit(path, x2, cache):
            hi = x2
        else:
            lo = x1
        x1 = hi - int((hi - lo) * INV_PHI)
        x2 = lo + int((hi - lo) * INV_PHI)
    for x in (lo, x1, x2, hi) if hi - lo > 3 else range(lo, hi + 1):
        _profit(path, x, cache)
    best: PathEval | None = None
    for at in cache.values():
        best = _better(at, best)
    return best if best is not None and best.gross_profit > 0 else None


def tick_boundaries(
    path: Evaluator, top: PathEval, cache: dict[int, PathEval | None]
) -> list[PathEval]:
    """For each tick count below ``top``'s, (about) the largest input that crosses fewer ticks."""
    found: list[PathEval] = []
    hi, ticks = top.amount_in, top.total_ticks
    while ticks > 0 and len(found) < _MAX_TICK_LEVELS:
        lo = 0
        while hi - lo > max(1, hi >> _BOUNDARY_REL_SHIFT):
            mid = (lo + hi) // 2
            _profit(path, mid, cache)
            at = cache[mid]
            if at is not None and at.total_ticks < ticks:
                lo = mid
            else:
                hi = mid
        if lo <= 0:
            break
        _profit(path, lo, cache)
        below = cache[lo]
        if below is None:
            break
        found.append(below)
        hi, ticks = lo, below.total_ticks
    return found


def piecewise(legs: Sequence[Leg], cap: int | None) -> tuple[list[int], bool] | None:
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


def to_tick_edge(path: Evaluator, chosen: Sized, net: NetFn, cap: int | None) -> Sized:
    """``chosen`` moved up to the last input crossing no more ticks than it does, exactly.

    A piece's end is located in floats and kept a hair inside the piece; when the gas of the
    next tick makes that end the net optimum, the profit still rises up to the exact edge, so
    the edge (bisected on exact evaluations) replaces it when it nets more.
    """
    lo, ticks = chosen.path.amount_in, chosen.path.total_ticks
    step = max(2, lo >> 28)
    hi = lo
    for _ in range(8):  # find an input past the edge (the float end is within ~1e-9 of it)
        hi = lo + step if cap is None else min(lo + step, cap)
        at = path(hi)
        if at is None or at.total_ticks > ticks or hi == cap:
            break
        lo, step = hi, step * 4
    else:
        return chosen
    if at is not None and at.total_ticks <= ticks:  # the cap itself is inside the piece
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        at = path(mid)
        if at is not None and at.total_ticks <= ticks:
            lo = mid
        else:
            hi = mid
    edge = path(lo)
    value = None if edge is None else net(edge)
    if edge is None or value is None or value <= chosen.net:
        return chosen
    return Sized(edge, value)


def best_net(path: Evaluator, amounts: Sequence[int], net: NetFn) -> Sized | None:
    chosen: Sized | None = None
    for amount in dict.fromkeys(amounts):
        at = path(amount)
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


def refine(legs: Sequence[Leg], chosen: Sized, net: NetFn, cap: int | None) -> Sized:
    """Settle a two-hop path with one V2 hop on the integer optimum next to ``chosen``.

    The float search lands on the plateau of the real profit, where the integer profit is
    ``⌊P⌋`` or ``⌊P⌋ − 1`` depending only on how much the hops lose to rounding.  Choosing the
    intermediate amount ``y`` (first hop's output) directly, the V2 hop's loss is exact and
    cheap: ``⌈G(y)⌉ − G(y)`` when it is the first hop (``x = ⌈G(y)⌉`` is the least input
    delivering ``y``), ``frac(R(y))`` when it is the last.  That loss turns by ``frac`` of the
    hop's slope per unit of ``y``, so the nearest ``y`` on each side with a small loss are
    found by stepping the phase (``next_landing``), scored with one quote of the other hop,
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
    target = refine_target(legs, chosen)
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
                d = next_landing(phase0, step, 1.0 - _REFINE_WINDOW, d or 0)
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


def refine_target(legs: Sequence[Leg], chosen: Sized) -> int | None:
    """The most any input can earn gross, when ``chosen`` crosses no tick and the real optimum
    lies inside both hops' current ranges (``None`` otherwise).

    Each hop's exact output is at most its ``bound`` curve, so with the first hop's bound
    inverted as ``G`` and the last one's as ``R``, ``T = max ⌊R − G⌋`` bounds every input the
    way it does for two V2 hops (``two_v2``); beyond a range the real curve changes, but the
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
    found = profit_top(m1.a, m1.b, m1.c, m2.a, m2.b, m2.c)
    if found is None:
        return None
    y = found[0] + 1
    room = m1.a - m1.c * y
    if room <= 0 or (b_second.reach is not None and y >= b_second.reach):
        return None
    if b_first.reach is not None and -(-(m1.b * y) // room) + 1 >= b_first.reach:
        return None
    return found[1]
