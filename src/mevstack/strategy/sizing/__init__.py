"""Optimal input amount of a cycle, on exact integer pool math, maximising net profit.

``optimise`` is the entry point; ``path`` holds the path types and exact evaluation,
``closed_form`` the fast proven optimum of all-V2 paths, ``certify`` the certified search that
settles the all-V2 paths it leaves (and says when it cannot prove one), ``search`` the paths
through V3, and ``phases`` the rounding-phase arithmetic they rely on to land on the integer
optimum.
"""

from mevstack.strategy.sizing.optimum import optimise
from mevstack.strategy.sizing.path import (
    Leg,
    NetFn,
    PathEval,
    Sized,
    compose,
    evaluate,
    minimal_input,
    mobius_optimum,
)

__all__ = [
    "Leg",
    "NetFn",
    "PathEval",
    "Sized",
    "compose",
    "evaluate",
    "minimal_input",
    "mobius_optimum",
    "optimise",
]
