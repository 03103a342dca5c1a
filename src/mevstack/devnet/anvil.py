"""Starting and stopping anvil processes: binary lookup, free ports, readiness, clean shutdown.

Readiness is detected by polling ``eth_chainId`` until it answers (with a deadline), never by
sleeping a fixed time.  Every process is started in its own process group and killed with it, so
an interrupted devnet leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from mevstack.errors import DevnetError

REPO_ROOT = Path(__file__).resolve().parents[3]


def anvil_binary() -> Path:
    """The anvil shipped by npm under the repo (``make setup``), or one on PATH."""
    override = os.environ.get("MEVSTACK_ANVIL")
    candidates = [Path(override)] if override else []
    candidates.append(REPO_ROOT / "node_modules" / ".bin" / "anvil")
    found = shutil.which("anvil")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    raise DevnetError("anvil not found: run `make setup` (installs @foundry-rs/anvil-linux-amd64)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Anvil:
    """One anvil node.  Use as a context manager or call ``start()`` / ``stop()``."""

    chain_id: int = 31337
    port: int = 0  # 0: pick a free port
    host: str = "127.0.0.1"
    block_time: float | None = None  # None: automine
    extra_args: list[str] = field(default_factory=list)
    accounts: int = 10
    balance_eth: int = 10_000
    log_path: Path | None = None
    # Linux: the kernel kills anvil if the thread that started it dies (even by SIGKILL), so a
    # crashed devnet leaves no orphans.  Only for nodes started from a long-lived thread.
    die_with_parent: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Started and not (yet) exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> Anvil:
        if self._proc is not None:
            return self
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_in_use(self.port, self.host):
            raise DevnetError(f"port {self.host}:{self.port} is already in use (another devnet?)")
        args = [
            str(anvil_binary()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
            "--balance",
            str(self.balance_eth),
            "--silent",
        ]
        if self.block_time is not None:
            args += ["--block-time", _fmt_seconds(self.block_time)]
        args += self.extra_args
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_kill_me_with_parent if self.die_with_parent else None,
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise DevnetError(
                        f"anvil on port {self.port} exited with code {self._proc.returncode}"
                    )
                try:
                    answer = client.post(self.rpc_url, json=payload).json()
                    if int(answer["result"], 16) == self.chain_id:
                        return
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                # Readiness poll of a child process: the interval only bounds CPU use.
                time.sleep(0.02)
        self.stop()
        raise DevnetError(f"anvil on port {self.port} did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crashing node would die."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _kill_me_with_parent() -> None:
    """Runs in the child before exec: ask for SIGKILL when the parent dies (Linux prctl)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
