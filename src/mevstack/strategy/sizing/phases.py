"""Rounding phases: where along a plateau the contracts' floors cost least.

Near an optimum the real profit is flat while each hop's rounding loss (the fractional part of
a real amount) turns by a fixed step per unit of the amount chosen: a rotation of the circle.
These helpers find the next amounts whose phase lands in a window (floats; every amount they
propose is checked exactly by the caller): one phase by stepping or by Euclid on the rotation
(``next_landing``), two at once for three-hop paths (``three_hop_landings``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from mevstack.strategy.pools import Mobius

_INNER_LANDINGS = 64  # inner-phase landings examined for a fast-turning pair of phases


def phase_landings(phase0: float, turn: float, threshold: float) -> Iterator[int]:
    """Successive ``d >= 0`` with ``frac(phase0 + turn·d) >= threshold``."""
    d: int | None = 0
    while d is not None:
        d = next_landing(phase0, turn, threshold, d)
        if d is not None:
            yield d
            d += 1


def three_hop_landings(
    curves: Sequence[Mobius],
    z0: int,
    phase0: float,
    turn: float,
    window: float,
    backwards: bool = False,
) -> Iterator[int]:
    """Offsets ``d >= 0`` of ``z = z0 + d`` (``z0 − d`` when ``backwards``) where both
    roundings of a three-hop path's first two hops are cheap.

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
        if backwards:  # stepping z down turns both phases the other way
            inner_turn, turn = (-inner_turn) % 1.0, (-turn) % 1.0
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
        d = next_landing(inner0, inner_turn, threshold, d or 0)
        if d is None:
            return
        current = (inner0 + (inner_turn * d) % 1.0) % 1.0
        outer = (phase0 + (turn * d) % 1.0) % 1.0
        if outer >= outer_floor and slope * (1.0 - current) <= 1.0 - outer:
            yield d
        d += 1


_SLOW_TURN = 0.1  # phases turning less than this per unit of z are followed as straight lines


# Steps of the straight-line walk: each skips a whole run of failing ``z``, so a few find the
# landing when the window is wide; a narrow one is then searched band by band (Euclid).
_SLOW_LANDINGS = 16


def _slow_landings(
    inner0: float, rate_in: float, outer0: float, rate_out: float, slope: float, window: float
) -> Iterator[int]:
    """``three_hop_landings`` when both phases turn slowly (the common case on deep pools).

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
    # Still nothing: a narrow window, where runs of failing ``d`` are short and many; the
    # landings are found band by band instead (O(log) per band, however far they are).
    yield from _band_landings(inner0, rate_in, outer0, rate_out, slope, window, d)


_BAND_TRIES = 64  # candidate bands examined before giving up
_BAND_SCAN = 64  # steps examined inside one candidate band


def _band_landings(
    inner0: float,
    rate_in: float,
    outer0: float,
    rate_out: float,
    slope: float,
    window: float,
    start: int,
) -> Iterator[int]:
    """``_slow_landings`` from ``start`` on, for narrow windows: Euclid over the outer bands.

    With deficits ``u = 1 − outer`` and ``v = 1 − inner`` (turning by ``α = −rate_out`` and
    ``β = −rate_in`` per step), a landing needs ``slope·v <= u <= window``.  ``u`` is in the
    window in bands, band ``m`` where ``u0 + α·d − m = s`` runs over ``(0, window]``; there
    ``v = V_m + ρ·s`` with ``ρ = β/α`` and ``V_m = frac(v0 − ρ·u0 + ρ·m)``: from band to band
    ``V_m`` rotates by ``ρ``.  A band holds a landing (in real ``d``) only if ``V_m`` lies in
    an arc around 0, ``[1 − max(ρ, 0)·window, 1) ∪ [0, window·(1/slope − ρ)]`` (the line
    ``v(s)`` meets the wedge ``slope·v <= s``), widened by a step of each phase for the whole
    ``d`` and the floats.  The next band whose ``V_m`` is in the arc is a rotation landing
    (``next_landing``, Euclid), and its few steps are then checked one by one.
    """
    alpha, beta = -rate_out, -rate_in
    if alpha == 0.0:
        return
    u0, v0 = 1.0 - outer0 % 1.0, 1.0 - inner0 % 1.0
    rho = beta / alpha
    slack = abs(beta) + abs(alpha) / slope + 1e-12
    before = max(rho, 0.0) * window + slack  # the arc's part below 1 ...
    after = max(0.0, window * (1.0 / slope - rho)) + slack  # ... and above 0
    threshold = 1.0 - (before + after)
    sign = 1 if alpha > 0.0 else -1
    turn = (rho * sign) % 1.0
    phase = (v0 - rho * u0 - after) % 1.0  # V_0 shifted so the arc is [threshold, 1)
    # the first band that ends at or after ``start`` (band ``k`` ends at
    # ``(k − u0 + window) / α`` when α > 0, and at ``(k + u0) / |α|`` when α < 0)
    reach = start * abs(alpha) - (window - u0 if alpha > 0.0 else u0)
    k = max(0, math.ceil(reach))
    floor_out = 1.0 - window
    for _ in range(_BAND_TRIES):
        if threshold > 0.0:
            found = next_landing(phase, turn, threshold, k)
            if found is None:
                return
            k = found
        m = sign * k
        ends = ((m - u0) / alpha, (m - u0 + window) / alpha)
        first = max(start, math.ceil(min(ends)) - 1)
        for d in range(first, min(math.floor(max(ends)) + 2, first + _BAND_SCAN)):
            outer = (outer0 + (rate_out * d) % 1.0) % 1.0
            inner = (inner0 + (rate_in * d) % 1.0) % 1.0
            if outer >= floor_out and 1.0 - outer >= slope * (1.0 - inner):
                yield d
        k += 1


def next_landing(phase0: float, turn: float, threshold: float, d: int) -> int | None:
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
