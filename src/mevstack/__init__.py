"""mevstack: multi-chain MEV infrastructure — exact pool state, opportunities, safe execution.

Importing the package also pins a sane interpreter recursion limit.  ``py_ecc`` (imported by
``eth-account``) raises it to 100000 at import time; with that limit CPython's guard against
C-stack exhaustion no longer fires before the stack runs out, so one deeply nested JSON document
parsed by a C extension kills the process with SIGSEGV instead of raising ``RecursionError``.
``py_ecc`` is imported here, before anything else can, and the limit put back afterwards; its own
recursive functions stay far below the default (a 256-bit scalar multiply recurses 256 deep).
"""

import sys as _sys

RECURSION_LIMIT = 1000  # CPython's default: deep enough for every library here, and safe

import py_ecc as _py_ecc  # noqa: E402,F401  (raises the limit; imported once, then reset)

_sys.setrecursionlimit(min(_sys.getrecursionlimit(), RECURSION_LIMIT))

__version__ = "0.1.0"
