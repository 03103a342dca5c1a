"""A real engine API process for failover tests: ``python -m tests.gateway.engine_process``.

Arguments: port, state dir, source name.  Serves the test store's data with the test tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from tests.api.conftest import make_app, make_view


def main() -> None:
    port, state_dir, source = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    app = make_app(state_dir, view=make_view(state_dir, source))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
