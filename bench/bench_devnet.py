"""Devnet start-up: five anvil chains started, deployed, seeded and switched to interval mining."""

from __future__ import annotations

import time

from bench.result import Result
from mevstack.devnet.anvil import free_port, port_in_use
from mevstack.devnet.network import CHAIN_SPECS, Devnet


def _free_base(width: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + width < 65535 and not any(port_in_use(base + i) for i in range(width)):
            return base
    raise RuntimeError("no block of free ports")


def run() -> list[Result]:
    began = time.monotonic()
    with Devnet(list(CHAIN_SPECS), base_port=_free_base(len(CHAIN_SPECS))) as devnet:
        devnet.start()
        startup = devnet.startup_seconds
        slowest_deploy = max(c.deploy_seconds for c in devnet.chains)
    total = time.monotonic() - began
    return [
        Result(
            "devnet start-up, 5 chains",
            startup,
            "s",
            target="< 30 s",
            met=startup < 30,
            note="anvils + WETH9/tokens/2xV2/V3 deployed and seeded + interval mining",
        ),
        Result("devnet slowest single-chain deploy", slowest_deploy, "s"),
        Result("devnet start + stop, 5 chains", total, "s"),
    ]
