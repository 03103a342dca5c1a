"""`mevstack devnet` end to end, as a user runs it: a real subprocess, real anvils, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mevstack.config import load_settings
from mevstack.devnet.activity import TRADER_ACCOUNTS
from mevstack.devnet.anvil import port_in_use
from mevstack.devnet.rpc import DevnetRpc
from tests.ports import free_port_block

pytestmark = pytest.mark.slow


def _devnet(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mevstack.cli",
            "devnet",
            "--out",
            str(tmp_path / "devnet.toml"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # blocks until the child prints; EOF when it exits
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"no {needle!r} in output: {''.join(lines)} / stderr: {err}")


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)  # polling a condition with a deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def base_port() -> int:
    return free_port_block(5)


def test_devnet_runs_trades_and_stops_on_sigint(tmp_path: Path, base_port: int) -> None:
    proc = _devnet(
        tmp_path, "--chains", "ethereum,optimism", "--base-port", str(base_port), "--activity"
    )
    ports = [base_port, base_port + 2]  # canonical slots of ethereum and optimism
    try:
        out = "".join(_wait_for_line(proc, "devnet running", timeout=90))
        assert "2 chain(s) up" in out
        settings = load_settings(tmp_path / "devnet.toml", environ={})
        assert [(c.name, c.chain_id) for c in settings.chains] == [
            ("ethereum", 1),
            ("optimism", 10),
        ]
        eth, op = settings.chains
        assert eth.rpc == [f"http://127.0.0.1:{ports[0]}"] and eth.block_time == 3.0
        assert op.block_time == 1.0
        assert {d.kind for d in op.dexes} == {"uniswap_v2", "uniswap_v3"}
        details = json.loads((tmp_path / "devnet.deployment.json").read_text())
        assert set(details) == {"ethereum", "optimism"}
        assert details["optimism"]["chain_id"] == 10
        assert details["optimism"]["v3"]["quoter_v2"].startswith("0x")
        assert len(details["ethereum"]["pools"]) == 20
        with DevnetRpc(op.rpc[0]) as rpc:
            assert int(rpc.call("eth_chainId"), 16) == 10
            assert rpc.call("anvil_getAutomine") is False
            accounts = rpc.call("eth_accounts")
            traders = [accounts[i] for i in TRADER_ACCOUNTS]
            start_block = int(rpc.call("eth_blockNumber"), 16)
            # Interval mining produces blocks, and the noise traders' swaps land in them.
            _poll(lambda: int(rpc.call("eth_blockNumber"), 16) >= start_block + 2, 30, "blocks")
            # Setup per trader: one WETH deposit + 6 tokens x 3 router approvals; beyond: swaps.
            setup_txs = len(traders) * (1 + 6 * 3)

            def swaps_mined() -> int:
                nonces = [rpc.call("eth_getTransactionCount", [t, "latest"]) for t in traders]
                return sum(int(n, 16) for n in nonces) - setup_txs

            _poll(lambda: swaps_mined() >= 3, 60, "noise trades")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for port in ports:
        assert not port_in_use(port)
    survivors = subprocess.run(
        ["pgrep", "-f", f"anvil .*--port ({ports[0]}|{ports[1]})"], capture_output=True
    )
    assert survivors.stdout == b""


def test_second_devnet_fails_and_sigterm_stops_every_anvil(tmp_path: Path, base_port: int) -> None:
    proc = _devnet(tmp_path, "--chains", "arbitrum", "--base-port", str(base_port))
    try:
        _wait_for_line(proc, "devnet running", timeout=90)
        assert port_in_use(base_port + 1)
        (tmp_path / "second").mkdir()
        second = _devnet(tmp_path / "second", "--chains", "arbitrum", "--base-port", str(base_port))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert err.startswith("mevstack: port 127.0.0.1:") and err.count("\n") == 1
        assert "already in use" in err
        assert proc.poll() is None  # the first devnet is untouched
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not port_in_use(base_port + 1)


def test_port_taken_is_one_clear_error(tmp_path: Path, base_port: int) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base_port))
        blocker.listen()
        proc = _devnet(tmp_path, "--chains", "ethereum", "--base-port", str(base_port))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"127.0.0.1:{base_port}" in err and "already in use" in err
    assert not (tmp_path / "devnet.toml").exists()


def test_bad_chain_name_is_one_clear_error(tmp_path: Path) -> None:
    proc = _devnet(tmp_path, "--chains", "ethereum,solana")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == (
        "mevstack: unknown chain 'solana' in --chains "
        "(known: ethereum, arbitrum, optimism, polygon, base)"
    )


def test_killed_devnet_leaves_no_orphan_anvil(tmp_path: Path, base_port: int) -> None:
    proc = _devnet(tmp_path, "--chains", "polygon", "--base-port", str(base_port))
    try:
        _wait_for_line(proc, "devnet running", timeout=90)
        assert port_in_use(base_port + 3)
        proc.kill()  # SIGKILL: no cleanup code runs; the kernel's parent-death signal must act
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _poll(lambda: not port_in_use(base_port + 3), 10, "the orphaned anvil to die")
