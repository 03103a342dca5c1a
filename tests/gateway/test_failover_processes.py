"""Failover against two real engine API processes: a hung one (SIGSTOP), a dead one (SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mevstack.devnet.anvil import free_port
from mevstack.gateway.ratelimit import RateLimits
from tests.api.conftest import auth
from tests.gateway.test_gateway import open_gateway

ROOT = Path(__file__).resolve().parents[2]


class EngineProcess:
    def __init__(self, port: int, proc: asyncio.subprocess.Process, source: str) -> None:
        self.port, self.proc, self.source = port, proc, source
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def engine_procs(tmp_path: Path) -> AsyncIterator[list[EngineProcess]]:
    procs: list[EngineProcess] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for source in ("proc-a", "proc-b"):
        port = free_port()
        (tmp_path / source).mkdir()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.gateway.engine_process",
            str(port),
            str(tmp_path / source),
            source,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        procs.append(EngineProcess(port, proc, source))
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            for engine in procs:
                while True:
                    assert engine.proc.returncode is None, "engine process died at startup"
                    try:
                        if (await client.get(engine.url + "/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
        yield procs
    finally:
        for engine in procs:
            if engine.proc.returncode is None:
                engine.proc.send_signal(signal.SIGCONT)
                engine.proc.kill()
                await engine.proc.wait()


async def reads_move_within_a_second(client: httpx.AsyncClient, path: str, to: str) -> float:
    started = time.monotonic()
    while True:
        answer = await client.get(path, headers=auth("reader"))
        assert answer.status_code == 200, answer.text
        if answer.json()["meta"]["source"] == to and answer.headers["x-cache"] == "miss":
            return time.monotonic() - started
        assert time.monotonic() - started < 1.0, "reads did not move within 1 s"


async def test_hung_then_dead_engine_processes(
    tmp_path: Path, engine_procs: list[EngineProcess]
) -> None:
    gw, client = await open_gateway(
        tmp_path,
        engine_procs,  # type: ignore[arg-type]
        swr_s=0.0,
        ttls={"/api": 0.05},
        limits=RateLimits(10**6, 10**6, 1.0),
    )
    try:
        path = "/api/mev/opportunities?limit=2"
        first = (await client.get(path, headers=auth("reader"))).json()["meta"]["source"]
        by_source = {e.source: e for e in engine_procs}
        serving = by_source[first]
        other = next(e for e in engine_procs if e is not serving)
        serving.proc.send_signal(signal.SIGSTOP)  # hung: the socket stays open, nothing answers
        moved = await reads_move_within_a_second(client, path, other.source)
        assert moved < 1.0, f"reads moved off the hung engine after {moved:.3f} s"
        serving.proc.send_signal(signal.SIGCONT)
        serving.proc.kill()
        await serving.proc.wait()
        other.proc.kill()  # now both are gone: the last good answer, marked stale
        await other.proc.wait()
        async with asyncio.timeout(2):
            while True:
                stale = await client.get(path, headers=auth("reader"))
                assert stale.status_code == 200
                if stale.headers["x-cache"] == "stale":
                    break
        assert stale.json()["meta"]["stale"] is True and stale.json()["meta"]["age_s"] >= 0
    finally:
        await client.aclose()
        await gw.aclose()
