"""The exact integer optimum of all-V2 paths, proven against a bound.

The contracts floor at every hop, so the real curve bounds the integer one from above; the
integer optimum is searched next to the real one and proven against that bound.  Two-hop
cycles (the commonest) work on the intermediate amount (``two_v2``): the bound ``T`` and a
phase landing that reaches it, which proves the optimum.  Longer cycles do the same on the last
hop's input (``multi_v2``): the first hops compose into one Möbius map for the bound, the least
input for a given amount is a chain of ceiling divisions, and the rounding phases say which
amounts to check; the rare cycle left unproven falls back to ``exact_closed_form``, which
proves the 0.1 % promise when it cannot prove the optimum (``_settle``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from mevstack.strategy.pools import Mobius
from mevstack.strategy.sizing.path import INV_PHI, compose
from mevstack.strategy.sizing.phases import next_landing, phase_landings, three_hop_landings

_TWO_HOP_LANDINGS = 16  # phase landings tried on each side of the top (each a few int ops)


def two_v2(first: Mobius, last: Mobius, cap: int | None) -> tuple[int, tuple[int, int]] | None:
    """The exact integer optimum of two V2 hops, proven, in a few integer operations.

    Work on the intermediate amount ``y``: the least input delivering ``y`` is ``⌈G(y)⌉``
    (``G``: the first hop's real inverse ``b1·y/(a1 − c1·y)``) and the output is ``⌊R(y)⌋``
    (``R``: the last hop).  Every input ``x`` gives some ``y = ⌊H(x)⌋`` with ``x >= ⌈G(y)⌉``,
    so no input earns more than ``T = max_y ⌊P(y)⌋``, ``P = R − G`` (concave, stationary at
    ``y*`` where ``√(a2·b2)·(a1 − c1·y) = √(a1·b1)·(b2 + c2·y)``; ``T`` is at ``⌊y*⌋`` or
    ``⌈y*⌉``).  ``⌊R⌋ − ⌈G⌉`` is ``⌊P⌋`` exactly when ``frac(R(y)) < frac(G(y))`` (or ``G(y)``
    is an integer) and ``⌊P⌋ − 1`` otherwise, so ``T`` is reached at a ``y`` on the plateau
    ``⌊P⌋ = T`` whose last-hop rounding ``frac(R(y))`` is small; on the plateau that phase
    turns by ``frac(R')`` per unit of ``y``, and ``next_landing`` steps straight to the next
    ``y`` on each side where it is small.  Each landing is checked exactly; reaching ``T``
    proves the optimum.  ``None`` when it is not reached (the general ``_settle`` takes over),
    when no input is profitable, or when ``cap`` binds.
    """
    a1, b1, c1, _ = first
    a2, b2, c2, _ = last
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


def profit_top(
    a1: int, b1: int, c1: int, a2: int, b2: int, c2: int
) -> tuple[int, int, float] | None:
    """``(y, T, frac(P(y)))`` at the integer top of ``P(y) = R(y) − G(y)`` (see ``two_v2``):
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
    """``profit_top`` with its working kept for the caller: ``(y, T, rest, d_g, d_r)`` where
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
    ``two_v2``; ``d_r = b2 + c2·y0``); 0 when none is found within ``_TWO_HOP_LANDINGS``
    landings a side."""
    phase0 = (1.0 - (a2 * y0 % d_r) / d_r) % 1.0  # frac(−R(y0))
    try:
        scale = float(d_r)  # R' is O(1): floats suffice, at a third of exact division's cost
        turn = (-(float(a2) / scale) * (float(b2) / scale)) % 1.0  # frac(−R'): per unit of y
    except OverflowError:  # a slope beyond float range: no phase to follow
        return 0
    # earning ⌊P⌋ needs frac(R) below frac(P), i.e. frac(−R) above 1 − frac(P) (or R whole)
    threshold = 1.0 - window if window > 1e-12 else 1.0 - 1e-12
    for sign, step in ((1, turn), (-1, (1.0 - turn) % 1.0)):
        d: int | None = 1
        for _ in range(_TWO_HOP_LANDINGS):
            d = next_landing(phase0, step, threshold, d or 1)
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


_PHASE_TRIES = 6


def multi_v2(curves: Sequence[Mobius], cap: int | None) -> tuple[int, list[int]] | None:
    """The exact integer optimum of three or more V2 hops, proven, on bare integers.

    As in ``_last_hop_phase``, but as the first and only road: with ``G`` the real inverse of
    the composed first hops and ``R`` the last hop, no input earns more than
    ``T = max ⌊R(z) − G(z)⌋`` over the last hop's input ``z`` (``profit_top``, at ``z0``).
    The least input delivering ``z`` through the floored hops is a chain of ceiling divisions;
    landings of the rounding phases near ``z0`` are tried until one earns ``T``, which proves
    it the optimum.  ``None`` when ``T`` is reached neither in ``_PHASE_TRIES`` landings nor by
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
        for sign in (1, -1):  # up from z0 first, then down: the plateau spreads both ways
            if len(curves) == 3:
                landings = three_hop_landings(curves, z0, phase0, turn, window, sign < 0)
            else:
                landings = phase_landings(phase0, turn if sign > 0 else -turn % 1.0, 1 - window)
            for d in itertools.islice(landings, _PHASE_TRIES):
                z = z0 + sign * d
                d_last, d_pre = b_k + c_k * z, a_p - c_p * z
                if z <= 0 or d_pre <= 0:
                    break
                if z * (a_k * d_pre - b_p * d_last) // (d_last * d_pre) < top:
                    break  # off the plateau: further landings earn less
                candidate = least(z)
                if candidate > 0 and a_k * z // d_last - candidate >= top:
                    x = candidate
                    break
            if x > 0:
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


def exact_closed_form(
    curves: Sequence[Mobius], m: Mobius, x_star: int, cap: int | None, phase_tried: bool = False
) -> tuple[int, list[int]] | None:
    """The integer optimum next to ``x*`` for paths of exact Möbius hops (V2), on bare
    integers, avoiding per-hop objects.  ``phase_tried``: ``multi_v2`` already searched the
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
       only ``T`` is taken (``profit_top``), the landings having been searched already.
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
        top = profit_top(pre.a, pre.b, pre.c, last.a, last.b, last.c)
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
        x = lo + int(((0.5 + k * INV_PHI) % 1.0) * width)
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
        landings = three_hop_landings(curves, z0, phase0, turn, window)
    else:
        landings = phase_landings(phase0, turn, 1.0 - window)
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
