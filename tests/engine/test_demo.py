"""``mevstack demo`` as a user runs it (a subprocess, here on free ports and two chains): it
finds opportunities, executes at least one with realized profit, shows the executed opportunity
with its trade's outcome, starts on a new database, and SIGINT stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from mevstack.devnet.anvil import free_port
from mevstack.devnet.demo import with_executors
from mevstack.store import Store, Trade
from tests.ports import free_port_block

EXECUTOR_A = "0x" + "a" * 40
EXECUTOR_B = "0x" + "b" * 40


def test_with_executors_adds_one_line_per_chain_and_none_to_dexes() -> None:
    text = "\n".join(
        [
            "[[chains]]",
            'name = "ethereum"',
            'wrapped_native = "0x01"',
            "[[chains.dexes]]",
            'name = "uniswap-v2"',
            "[[chains]]",
            'name = "base"',
            'wrapped_native = "0x02"',
        ]
    )
    out = with_executors(text, {"ethereum": EXECUTOR_A, "base": EXECUTOR_B}).splitlines()
    assert out[3] == f'executor = "{EXECUTOR_A}"' and out[2] == 'wrapped_native = "0x01"'
    assert out[-1] == f'executor = "{EXECUTOR_B}"'
    assert sum(line.startswith("executor") for line in out) == 2


def _poll(what: str, within: float, probe: Any) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)  # polling a running process's state, bounded by the deadline
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def test_demo_executes_with_profit_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    base = free_port_block(2)
    engine, gateway, ws, dashboard = (free_port() for _ in range(4))
    out = tmp_path / "demo.out"
    # a previous run's database, with a trade on chains that are gone: the demo starts afresh
    (tmp_path / "state").mkdir()
    with Store.open(f"sqlite:///{tmp_path}/state/mevstack.db") as old:
        old.insert_trade(
            Trade(
                id="previous-run",
                chain="ethereum",
                route="public",
                token="0x" + "11" * 20,
                status="submitted",
                tx_hashes=("0x" + "22" * 32,),
            )
        )
    command = [
        str(Path(sys.executable).parent / "mevstack"),
        "demo",
        "--state-dir",
        str(tmp_path / "state"),
        "--chains",
        "ethereum,arbitrum",
        "--base-port",
        str(base),
        "--engine-port",
        str(engine),
        "--gateway-port",
        str(gateway),
        "--ws-port",
        str(ws),
        "--dashboard-port",
        str(dashboard),
    ]
    with out.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=os.environ)
    try:

        def token() -> str | None:
            found = re.search(r"login token: (\S+)", out.read_text())
            return None if found is None else found.group(1)

        bearer = _poll("the login token", 120, token)
        text = out.read_text()
        assert "DEVNET ONLY" in text and f"http://127.0.0.1:{dashboard}" in text
        # the banner is said once everything listens: the URL it gives works at once
        assert httpx.get(f"http://127.0.0.1:{dashboard}/", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{gateway}/health", timeout=5).status_code == 200
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{engine}",
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=10,
        )

        def get(path: str) -> list[dict[str, Any]]:
            try:
                answer = client.get(path)
            except httpx.HTTPError:
                return []
            data: list[dict[str, Any]] = answer.json()["data"] if answer.is_success else []
            return data

        assert _poll("opportunities", 90, lambda: get("/api/mev/opportunities?limit=5"))

        def profitable() -> list[dict[str, Any]]:
            return [
                t
                for t in get("/api/trades?status=included&limit=50")
                if int(t["realized_profit"]) > 0
            ]

        trades = _poll("an included trade with profit", 120, profitable)
        assert all(t["realized_profit"] == t["expected_profit"] for t in trades[:1])
        assert (tmp_path / "state" / "mevstack-previous.db").exists()
        assert all(t["id"] != "previous-run" for t in get("/api/trades?limit=500"))

        def followed() -> list[dict[str, Any]]:
            # an executed opportunity ends in its trade's outcome, not "expired"
            found = []
            for trade in profitable():
                answer = client.get(f"/api/mev/opportunities/{trade['opportunity_id']}")
                if answer.is_success and answer.json()["data"]["status"] == "included":
                    found.append(trade)
            return found

        assert _poll("an opportunity that followed its trade", 60, followed)
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, out.read_text()[-3000:]
    assert "Traceback" not in out.read_text()
    for port in (base, base + 1):
        left = subprocess.run(
            ["pgrep", "-f", f"anvil.*--port {port}"], capture_output=True, text=True
        )
        assert left.stdout.strip() == "", f"an anvil on port {port} survived: {left.stdout}"
