"""``optimise``: the input amount of a path that maximises its net profit, by path shape.

All-V2 paths go to the closed forms (``closed_form``), then to the certified search
(``certify``); their answers say whether they are proven.  Paths through V3 go to the
piecewise walk and exact refinement (``search``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mevstack.strategy.sizing.certify import certify
from mevstack.strategy.sizing.closed_form import multi_v2, two_v2
from mevstack.strategy.sizing.path import (
    Leg,
    NetFn,
    PathEval,
    Sized,
    exact_curves,
    path_evaluator,
)
from mevstack.strategy.sizing.search import (
    best_net,
    gross_search,
    piecewise,
    refine,
    tick_boundaries,
    to_tick_edge,
)

_DEFAULT_SEED = 10**15


_new_tuple = tuple.__new__
_NO_TICKS = (0, 0)


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
            fast = two_v2(m1, m2, cap)
            if fast is not None:
                # built with tuple.__new__: a named tuple's own constructor is a Python frame,
                # a tenth of this whole path
                at = _new_tuple(PathEval, (fast[0], fast[1], _NO_TICKS))
                value = net(at)
                return None if value is None else _new_tuple(Sized, (at, value, True))
    curves = exact_curves(legs)
    if curves is not None:
        multi = multi_v2(curves, cap) if len(curves) > 2 else None
        if multi is not None:
            at = PathEval(multi[0], tuple(multi[1]), (0,) * len(legs))
            value = net(at)
            return None if value is None else Sized(at, value, True)
        found = certify(curves, cap)
        if found is None or found.amounts_out[-1] <= found.amount_in:
            return None
        at = PathEval(found.amount_in, found.amounts_out, (0,) * len(legs))
        value = net(at)
        return None if value is None else Sized(at, value, found.proven)
    seed = _DEFAULT_SEED
    path = path_evaluator(legs)
    shape = piecewise(legs, cap)
    if shape is not None:
        candidates, complete = shape
        chosen = best_net(path, candidates, net)
        if complete or chosen is None:
            if chosen is None or chosen.path.gross_profit <= 0:
                return None
            if chosen.path.amount_in != candidates[-1]:  # a piece's end: settle on the edge
                chosen = to_tick_edge(path, chosen, net, cap)
            return refine(legs, chosen, net, cap)
        seed = chosen.path.amount_in
    cache: dict[int, PathEval | None] = {}
    gross = gross_search(path, seed, cap, cache)
    if gross is None:
        return None
    chosen = best_net(
        path, [c.amount_in for c in [gross, *tick_boundaries(path, gross, cache)]], net
    )
    if chosen is None:
        return None
    if chosen.path.amount_in != gross.amount_in:  # a tick boundary, bisected to a fraction
        chosen = to_tick_edge(path, chosen, net, cap)
    return refine(legs, chosen, net, cap)
