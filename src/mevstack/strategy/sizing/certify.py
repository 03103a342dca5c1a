"""The exact integer optimum of an all-V2 path of any length, with its certificate.

A V2 pair floors its output, so an input ``x`` reaching amount ``v`` after the first ``j`` hops
costs at least ``least(v)`` (ceiling divisions back through those hops) and pays exactly
``after(v)`` (floor divisions forward through the rest).  The best profit over every integer
input is ``max_v after(v) − least(v)`` over integer ``v`` (an input ``x`` reaching ``v``
earns ``after(v) − x <= after(v) − least(v)``, and ``least(v)`` itself earns at least that).
With ``pre`` and ``post`` the real composed Möbius maps of both parts, ``after <= post`` and
``least >= pre⁻¹``, so ``after(v) − least(v) <= ⌊P(v)⌋`` for the concave
``P = post − pre⁻¹``.  ``T = max ⌊P(v)⌋`` bounds the optimum and ``{v: P(v) >= p}`` is an
interval, the exact integer roots of one quadratic.

The certificate: an input earning ``T``, or every ``v`` with ``P(v) >= best + 1`` evaluated
(the plateau exhausted).  ``v`` is taken at the most valuable token of the path (fewest units
across the plateau, so the fewest to exhaust), and candidates are drawn first where the
costliest rounding next to ``v`` is small (``next_landing`` on its phase, re-anchored exactly
at each landing), which reaches ``T`` within a few dozen evaluations on deep two- and
three-hop paths.  With four or more hops several roundings are left to chance, and a deep
cycle is then often left unproven: when neither the bound is reached nor the plateau small
enough to exhaust within the budget, the answer says it is not proven.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from mevstack.strategy.pools import Mobius
from mevstack.strategy.sizing.phases import next_landing

# Exact evaluations spent on exhausting a plateau (each a few big-int divisions per hop); a
# plateau wider than this is searched by landings only.
SCAN_BUDGET = 4096


# Landings of the costliest rounding tried before exhausting (or giving up on) the plateau.
LANDING_BUDGET = 512


_WINDOW_FLOOR = 1e-12


class Certified(NamedTuple):
    """An all-V2 optimum: the input, every hop's output, and whether it is proven optimal
    (``bound`` is the most any input can earn; equal to the profit when proven)."""

    amount_in: int
    amounts_out: tuple[int, ...]
    proven: bool
    bound: int


def _compose(curves: Sequence[Mobius]) -> tuple[int, int, int]:
    a, b, c = 1, 1, 0
    for m in curves:
        a, b, c = a * m.a, b * m.b, m.b * c + m.c * a
    return a, b, c


class _Split:
    """A path cut at the amount ``v`` after its first ``j`` hops (exact integers)."""

    def __init__(self, curves: Sequence[Mobius], j: int) -> None:
        self.before = [(m.a, m.b, m.c) for m in reversed(curves[:j])]
        self.after = [(m.a, m.b, m.c) for m in curves[j:]]
        self.pre = _compose(curves[:j])
        self.post = _compose(curves[j:])

    def least(self, v: int) -> int:
        """The least input whose amount after the first hops is at least ``v`` (0: none)."""
        for a, b, c in self.before:
            room = a - c * v
            if room <= 0:
                return 0
            v = -(-(v * b) // room)
        return v

    def forward(self, v: int) -> int:
        for a, b, c in self.after:
            v = a * v // (b + c * v)
        return v

    def gain(self, v: int) -> int | None:
        """Exact best profit of the inputs reaching ``v`` (``None``: none reaches it)."""
        x = self.least(v)
        return None if x <= 0 else self.forward(v) - x

    def value(self, v: int) -> tuple[int, int] | None:
        """``P(v)`` as ``(numerator, positive denominator)`` (``None`` outside the domain of
        ``pre⁻¹``)."""
        a1, b1, c1 = self.pre
        a2, b2, c2 = self.post
        d_pre, d_post = a1 - c1 * v, b2 + c2 * v
        if v <= 0 or d_pre <= 0:
            return None
        return a2 * v * d_pre - b1 * v * d_post, d_post * d_pre

    def bound_at(self, v: int) -> int | None:
        """``⌊P(v)⌋`` (``None`` outside the domain of ``pre⁻¹``)."""
        found = self.value(v)
        return None if found is None else found[0] // found[1]

    def at_least(self, v: int, p: int) -> bool:
        found = self.bound_at(v)
        return found is not None and found >= p

    def _rises(self, v: int, hi: int) -> bool:
        """``P(v + 1) > P(v)`` within ``[1, hi]`` (``v = 0``: rising, by convention)."""
        if v < 1:
            return True
        if v >= hi:
            return False
        here, after = self.value(v), self.value(v + 1)
        if after is None:
            return False
        if here is None:
            return True
        return after[0] * here[1] > here[0] * after[1]

    def top(self, hi: int) -> tuple[int, int] | None:
        """``(v, ⌊P(v)⌋)`` at the best integer ``v`` in ``[1, hi]`` (``None``: ``P`` is never
        positive there).  ``P`` is concave, so ``P(v + 1) > P(v)`` holds up to the top and never
        after it: that sign, on exact values, is searched from the stationary point's estimate."""
        a1, b1, c1 = self.pre
        a2, b2, c2 = self.post
        s1, s2 = math.isqrt(a1 * b1), math.isqrt(a2 * b2)
        den = s2 * c1 + s1 * c2
        if den <= 0:
            return None
        start = min(max(1, (s2 * a1 - s1 * b2) // den), hi)
        # the first v where P stops rising (concave: the rise only shrinks), galloping from the
        # estimate (it is near unless floats or extreme reserves put it off), then bisecting
        if self._rises(start, hi):
            below, step = start, 1  # P rises at ``below``; find where it does not
            above = min(hi, start + step)
            while above < hi and self._rises(above, hi):
                below, step = above, step * 2
                above = min(hi, below + step)
        else:
            above, step = start, 1  # P does not rise at ``above``; find where it does
            below = max(0, start - step)
            while below >= 1 and not self._rises(below, hi):
                above, step = below, step * 2
                below = max(0, above - step)
        while above - below > 1:
            mid = (below + above) // 2
            if self._rises(mid, hi):
                below = mid
            else:
                above = mid
        v = above
        best = self.value(v)
        if best is None:
            return None
        top = best[0] // best[1]
        return (v, top) if top > 0 else None

    def interval(self, p: int, top: int, hi: int) -> tuple[int, int]:
        """The integers ``v`` in ``[1, hi]`` with ``P(v) >= p``, ``top`` among them: the roots
        of ``α·v² + β·v + γ >= 0``, then settled by exact checks (concavity: an interval)."""
        a1, b1, c1 = self.pre
        a2, b2, c2 = self.post
        alpha = p * c1 * c2 - a2 * c1 - b1 * c2
        beta = a2 * a1 - b1 * b2 + p * b2 * c1 - p * c2 * a1
        gamma = -p * b2 * a1
        disc = beta * beta - 4 * alpha * gamma
        if alpha >= 0 or disc < 0:  # not a cap-shaped quadratic: fall back on search
            lo_guess, hi_guess = top, top
        else:
            root = math.isqrt(disc)
            lo_guess = max(1, (-beta + root) // (-2 * alpha))
            hi_guess = min(hi, (-beta - root) // (-2 * alpha) + 1)
        return (
            self._edge(p, top, lo_guess, -1, 1),
            self._edge(p, top, max(hi_guess, top), 1, hi),
        )

    def _edge(self, p: int, top: int, guess: int, side: int, limit: int) -> int:
        """The last ``v`` from ``top`` towards ``side`` with ``P(v) >= p`` (``guess`` a hint)."""
        inside = top
        if (guess - top) * side > 0 and self.at_least(guess, p):
            inside = guess
        step = 1
        while True:  # gallop out of the interval, then bisect back to its edge
            probe = inside + side * step
            if (probe - limit) * side > 0:
                probe = limit
            if probe == inside or not self.at_least(probe, p):
                break
            inside = probe
            step *= 2
        outside = inside + side * step
        if (outside - limit) * side > 0:
            if self.at_least(limit, p):
                return limit
            outside = limit
        while abs(outside - inside) > 1:
            mid = (inside + outside) // 2
            if self.at_least(mid, p):
                inside = mid
            else:
                outside = mid
        return inside


def _cut(curves: Sequence[Mobius], x_hint: float) -> int:
    """Where to cut the path: after the hop whose output token is the most valuable (fewest
    units per unit of input at the optimum), so the plateau spans the fewest amounts."""
    best_j, best_rate = 1, math.inf
    amount, rate = x_hint, 1.0
    try:
        for j, m in enumerate(curves[:-1], start=1):
            a, b, c = float(m.a), float(m.b), float(m.c)
            den = b + c * amount
            if not den > 0.0:
                break
            rate *= a / den * (b / den)
            amount = a * amount / den
            if rate < best_rate:
                best_j, best_rate = j, rate
    except (OverflowError, ZeroDivisionError):
        pass
    return best_j


class _Rounding(NamedTuple):
    """The costliest rounding next to the cut, as a phase to land in a window: the first hop
    after the cut flooring (``after``), or the last hop before it rounding its input up."""

    a: int
    b: int
    c: int
    after: bool
    cost: float  # input units one unit of this rounding is worth

    def phase(self, v: int) -> tuple[float, float] | None:
        """``(ψ, ψ')`` at ``v``: the rounding loss is at most ``w`` where ``ψ >= 1 − w``."""
        a, b, c = self.a, self.b, self.c
        if self.after:  # frac(R(v)), R = a·v/(b + c·v): ψ = 1 − frac
            den = b + c * v
            rest = a * v % den
            psi = 1.0 - rest / den if rest else 1.0 - _WINDOW_FLOOR
            slope = -(float(a) / float(den)) * (float(b) / float(den))
        else:  # ⌈G(v)⌉ − G(v), G = b·v/(a − c·v): ψ = frac(G)
            den = a - c * v
            if den <= 0:
                return None
            rest = b * v % den
            psi = rest / den if rest else 1.0 - _WINDOW_FLOOR
            slope = (float(a) / float(den)) * (float(b) / float(den))
        return psi, slope


def _costliest(curves: Sequence[Mobius], j: int, x_hint: float) -> _Rounding:
    """The rounding next to the cut ``j`` that costs most per unit (floats, for the choice)."""
    a_pre, b_pre, c_pre = _compose(curves[: j - 1])
    a_post, b_post, c_post = _compose(curves[j + 1 :])
    try:
        # value of the token entering hop j−1, in input units (the earlier hops' inverse slope)
        amount = x_hint
        den = float(b_pre) + float(c_pre) * amount
        cost_before = den * den / (float(a_pre) * float(b_pre))
        w = float(a_pre) * amount / den
        # the token leaving hop j, valued by the later hops' slope
        for m in curves[j - 1 : j + 1]:
            w = float(m.a) * w / (float(m.b) + float(m.c) * w)
        den = float(b_post) + float(c_post) * w
        cost_after = float(a_post) / den * (float(b_post) / den)
    except (OverflowError, ZeroDivisionError):
        cost_before, cost_after = 1.0, 1.0
    if cost_after >= cost_before:
        m = curves[j]
        return _Rounding(m.a, m.b, m.c, True, cost_after)
    m = curves[j - 1]
    return _Rounding(m.a, m.b, m.c, False, cost_before)


def certify(
    curves: Sequence[Mobius],
    cap: int | None,
    *,
    scan_budget: int = SCAN_BUDGET,
    landing_budget: int = LANDING_BUDGET,
) -> Certified | None:
    """The exact integer optimum of two or more V2 hops, proven when the certificate holds.

    ``None`` when no input below ``cap`` earns a positive profit (proven: ``T <= 0``).
    """
    a, b, c = _compose(curves)
    if a <= b or c <= 0:
        return None  # the real profit is negative at every input, so is the integer one
    x_hint = float((math.isqrt(a * b) - b) // c)
    j = _cut(curves, x_hint)
    split = _Split(curves, j)
    a1, _, c1 = split.pre
    hi = (a1 - 1) // c1 if c1 > 0 else 1 << 256
    if cap is not None:
        if cap <= 0:
            return None
        v_cap = cap
        for m in curves[:j]:
            v_cap = m.a * v_cap // (m.b + m.c * v_cap)
        hi = min(hi, v_cap)
    if hi < 1:
        return None
    found = split.top(hi)
    if found is None:
        return None
    v0, bound = found
    best_v, best = 0, 0
    for v in (v0, v0 - 1, v0 + 1):
        if 1 <= v <= hi:
            gain = split.gain(v)
            if gain is not None and gain > best:
                best_v, best = v, gain
    if best < bound:
        best_v, best = _land(split, curves, j, x_hint, v0, hi, bound, best_v, best, landing_budget)
    proven = best >= bound
    if not proven:
        lo, up = split.interval(best + 1, v0, hi)
        if up - lo + 1 <= scan_budget:
            for v in range(lo, up + 1):
                gain = split.gain(v)
                if gain is not None and gain > best:
                    best_v, best = v, gain
            proven = True  # every v that could beat the best was evaluated
    if best <= 0:  # nothing profitable found (proven absent when ``proven``)
        return None
    x = split.least(best_v)
    outs: list[int] = []
    amount = x
    for m in curves:
        amount = m.a * amount // (m.b + m.c * amount)
        outs.append(amount)
    return Certified(x, tuple(outs), proven, bound)


def _land(
    split: _Split,
    curves: Sequence[Mobius],
    j: int,
    x_hint: float,
    v0: int,
    hi: int,
    bound: int,
    best_v: int,
    best: int,
    budget: int,
) -> tuple[int, int]:
    """Amounts ``v`` on both sides of ``v0`` where the costliest rounding next to the cut is
    small, each evaluated exactly, until one earns ``bound`` or ``budget`` landings are spent;
    a side ends where ``P`` falls below the best found (concave: it only falls further)."""
    rounding = _costliest(curves, j, x_hint)
    # the window: how far P at the top is above ``bound``, shared by every rounding
    a1, b1, c1 = split.pre
    a2, b2, c2 = split.post
    d_pre, d_post = a1 - c1 * v0, b2 + c2 * v0
    num = a2 * v0 * d_pre - b1 * v0 * d_post
    window = (num % (d_post * d_pre)) / (d_post * d_pre)
    width = max(window / max(rounding.cost, 1.0), _WINDOW_FLOOR)
    threshold = 1.0 - width
    anchors = {1: v0, -1: v0}
    spent = 0
    while anchors and spent < budget:
        for side in list(anchors):
            anchor = anchors[side]
            phased = rounding.phase(anchor)
            if phased is None:
                del anchors[side]
                continue
            psi, slope = phased
            turn = (slope * side) % 1.0
            d = next_landing(psi, turn, threshold, 1)
            spent += 1
            v = anchor + side * (d if d is not None else 1)
            if not 1 <= v <= hi or not split.at_least(v, best + 1):
                del anchors[side]
                continue
            gain = split.gain(v)
            if gain is not None and gain > best:
                best_v, best = v, gain
                if best >= bound:
                    return best_v, best
            anchors[side] = v
    return best_v, best
