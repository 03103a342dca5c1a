"""The exact integer optimum of all-V2 paths, proven against a bound.

The contracts floor at every hop, so the real curve bounds the integer one from above; the
integer optimum is searched next to the real one and proven against that bound.  Two-hop
cycles (the commonest) work on the intermediate amount (``two_v2``): the bound ``T`` and a
phase landing that reaches it, which proves the optimum.  Longer cycles do the same on the last
hop's input (``multi_v2``): the first hops compose into one Möbius map for the bound, the least
input for a given amount is a chain of ceiling divisions, and the rounding phases say which
amounts to check.  Both answer only when the bound is reached (the certificate); a cycle they
leave goes to ``certify``, which also exhausts plateaus.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from mevstack.strategy.pools import Mobius
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
