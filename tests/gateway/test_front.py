"""``mevstack up``'s front process as real processes: Ctrl-C (SIGINT to the whole process group,
as a terminal sends it) stops both cleanly, a taken port is one line, and a front process whose
engine process was killed outright exits by itself instead of keeping the ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mevstack.devnet.anvil import free_port
from tests.engine.world import write_config


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _front_pid(pid: int) -> int:
    """The spawned front process (multiprocessing also starts its resource tracker)."""
    (front,) = [
        child
        for child in _children(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return front


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


async def _wait(what: str, within: float, probe: object) -> None:
    deadline = time.monotonic() + within
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)  # polling another process's state, bounded by the deadline


def _config(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    ports = {k: free_port() for k in ("engine_port", "gateway_port", "ws_port", "dashboard_port")}
    server = {**ports, "backends": [f"http://127.0.0.1:{ports['engine_port']}"]}
    return write_config(tmp_path / "mevstack.toml", [], tmp_path, server=server), ports


def _up(config: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with out.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "mevstack.cli", "up", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a shell job
            env=env,
        )


async def _serving(proc: subprocess.Popen[bytes], ports: dict[str, int], out: Path) -> int:
    """Wait for the gateway to answer through the engine; returns the front process's pid."""

    def answers() -> bool:
        assert proc.poll() is None, out.read_text()
        try:
            got = httpx.get(f"http://127.0.0.1:{ports['gateway_port']}/health", timeout=1)
        except httpx.TransportError:
            return False
        return got.status_code == 200 and got.json()["status"] == "ok"

    await _wait("the gateway", 60, answers)
    return _front_pid(proc.pid)


async def test_ctrl_c_stops_engine_and_front_process_cleanly(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    out = tmp_path / "up.log"
    proc = _up(config, out)
    try:
        front = await _serving(proc, ports, out)
        assert _alive(front)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = out.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    await _wait("the front process gone", 10, lambda: not _alive(front))
    assert _children(proc.pid) == []  # the resource tracker went too
    for port in ports.values():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # every port given back


async def test_front_process_exits_when_the_engine_process_is_killed(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    out = tmp_path / "up.log"
    proc = _up(config, out)
    try:
        front = await _serving(proc, ports, out)
        proc.kill()  # SIGKILL: no shutdown code runs in the engine process
        await asyncio.to_thread(proc.wait, 10)
        await _wait("the orphaned front process to exit", 20, lambda: not _alive(front))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_taken_websocket_port_is_one_line(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["ws_port"]))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "mevstack.cli", "up", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"WebSocket: cannot listen on 127.0.0.1:{ports['ws_port']}" in done.stderr


async def test_the_front_process_never_holds_the_keystore_password(tmp_path: Path) -> None:
    """The process that faces the network has no use for the operator key's password."""
    config, ports = _config(tmp_path)
    out = tmp_path / "up.log"
    secret = "front-must-not-see-this"
    proc = _up(config, out, env={**os.environ, "MEVSTACK_KEY_PASSWORD": secret})
    try:
        front = await _serving(proc, ports, out)
        engine_env, front_env = (_environ(pid) for pid in (proc.pid, front))
        assert secret.encode() in engine_env
        assert secret.encode() not in front_env
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
