"""The ``mevstack devnet`` command: start the chains, write the config, trade, stop on a signal.

Runs in the foreground until Ctrl-C or SIGTERM, then stops the noise traders and every anvil it
started.  Anvil children also carry a parent-death signal, so even a SIGKILLed devnet leaves no
orphan chains behind.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mevstack.config import load_settings
from mevstack.devnet.activity import NoiseTraders
from mevstack.devnet.network import (
    Devnet,
    DevnetChain,
    deployment_document,
    render_config,
    select_chains,
    write_atomically,
)
from mevstack.errors import DevnetError, MevstackError


class _Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM: unwinds to the cleanup."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@dataclass
class _Trading:
    chain: DevnetChain
    traders: NoiseTraders
    thread: threading.Thread | None = None
    error: str | None = None
    reported: bool = False


@dataclass
class DevnetOptions:
    out: Path
    chains: str = "ethereum,arbitrum,optimism,polygon,base"
    base_port: int = 8545
    time_scale: float = 0.25
    activity: bool = False
    seed: int = 0
    log_dir: Path | None = None


def deployment_path(out: Path) -> Path:
    return out.with_name(out.stem + ".deployment.json")


def _say(text: str) -> None:
    print(text, flush=True)


def run_devnet(options: DevnetOptions) -> int:
    """The whole command; returns the exit code (0 after a clean stop by signal)."""
    specs = select_chains(options.chains)
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    devnet = Devnet(
        specs,
        base_port=options.base_port,
        time_scale=options.time_scale,
        seed=options.seed,
        log_dir=options.log_dir,
    )
    stop = threading.Event()
    trading: list[_Trading] = []
    try:
        chains = devnet.start()
        write_atomically(options.out, render_config(chains))
        details = deployment_path(options.out)
        write_atomically(details, json.dumps(deployment_document(chains), indent=2) + "\n")
        # The config must be one mevstack reads as is: prove it before announcing it.
        load_settings(options.out, environ={})
        _summary(devnet, options.out, details)
        if options.activity:
            trading = _start_activity(chains, stop, options.seed)
            _say(
                f"noise traders: {len(trading[0].traders.accounts)} accounts per chain, "
                "about one swap per block"
            )
        _say("devnet running; Ctrl-C (or SIGTERM) stops every chain")
        while True:
            stop.wait(1.0)  # wakes to watch the children; a signal interrupts it at once
            dead = devnet.dead_chains()
            if dead:
                raise DevnetError(f"anvil for {', '.join(dead)} exited unexpectedly")
            for t in trading:
                if t.error and not t.reported:
                    t.reported = True
                    print(
                        f"mevstack: activity on {t.chain.spec.name} stopped: {t.error}",
                        file=sys.stderr,
                        flush=True,
                    )
    except _Stop:
        _say("stopping devnet...")
        return 0
    finally:
        stop.set()
        for t in trading:
            if t.thread is not None:
                t.thread.join(timeout=10)
            t.traders.close()
        devnet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _summary(devnet: Devnet, out: Path, details: Path) -> None:
    chains = devnet.chains
    _say(f"mevstack devnet: {len(chains)} chain(s) up in {devnet.startup_seconds:.1f} s")
    for c in chains:
        d = c.deployment
        pools = len(d.pools) if d else 0
        tokens = len(d.tokens) if d else 0
        _say(
            f"  {c.spec.name:<9} chain {c.spec.chain_id:<6} {c.anvil.rpc_url:<24} "
            f"block {c.block_time} s  {tokens} tokens  {pools} pools  "
            f"deployed in {c.deploy_seconds:.1f} s"
            + ("  (+ OP-stack fee predeploys)" if c.spec.op_stack else "")
        )
    _say(f"config written to {out} (deployment details: {details})")


def _start_activity(chains: list[DevnetChain], stop: threading.Event, seed: int) -> list[_Trading]:
    trading = []
    for chain in chains:
        assert chain.deployment is not None
        traders = NoiseTraders(
            chain.anvil.rpc_url, chain.deployment, seed=seed + chain.spec.chain_id
        )
        trading.append(_Trading(chain, traders))
    for t in trading:
        t.thread = threading.Thread(
            target=_trade, args=(t, stop), name=f"activity-{t.chain.spec.name}", daemon=True
        )
        t.thread.start()
    return trading


def _trade(t: _Trading, stop: threading.Event) -> None:
    try:
        t.traders.setup()  # in the thread: funding waits about one block on each chain
        t.traders.run(stop, interval=float(t.chain.block_time))
    except MevstackError as exc:
        t.error = str(exc)
