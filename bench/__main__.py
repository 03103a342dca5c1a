"""Run every benchmark module, print one table, write ``bench/results.json``.

A benchmark module is ``bench/bench_<topic>.py`` exposing ``run() -> list[Result]``.  Each result
carries mevstack's figure, the baseline's figure from the same run, and the target when there is
one: this machine is shared and noisy, so ratios mean more than absolute times.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import traceback
from pathlib import Path

from bench.result import Result


def _modules(selected: list[str]) -> list[str]:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    return names


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="substrings of benchmark module names to run")
    args = parser.parse_args()
    results: list[Result] = []
    failures: list[str] = []
    for name in _modules(args.only):
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            results.extend(module.run())
        except Exception:
            failures.append(name)
            traceback.print_exc()
    print(Result.table(results))
    out = Path(__file__).parent / "results.json"
    out.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    print(f"\nwrote {out}")
    if failures:
        print(f"benchmarks that failed to run: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
