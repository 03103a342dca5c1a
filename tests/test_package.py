"""Package-wide invariants that hold once mevstack is imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from mevstack import RECURSION_LIMIT

# Everything the CLI can start, plus eth-account, whose py_ecc raises the limit at import.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import mevstack, mevstack.cli, mevstack.api.app, mevstack.gateway.server
    import mevstack.engine.engine, mevstack.execution.keys, eth_account
    print(sys.getrecursionlimit(), flush=True)
    try:
        json.loads("[" * 100000 + "]" * 100000)
    except RecursionError:
        print("refused", flush=True)
    """
)


def test_recursion_limit_is_sane_after_every_import() -> None:
    """A raised limit lets deeply nested input exhaust the C stack: SIGSEGV, not an error."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    limit, outcome = done.stdout.split()
    assert int(limit) <= RECURSION_LIMIT
    assert outcome == "refused"
