"""Test-side driving of real anvil nodes: a WETH9 whose deposits emit one log per block."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from eth_utils.crypto import keccak

from mevstack.devnet.anvil import REPO_ROOT

WETH9_ARTIFACT = REPO_ROOT / "node_modules/@uniswap/v2-periphery/build/WETH9.json"
DEPOSIT_TOPIC = "0x" + keccak(b"Deposit(address,uint256)").hex()
DEPOSIT_SELECTOR = "0xd0e30db0"


class Driver:
    """Synchronous JSON-RPC to one anvil (test set-up only; the code under test is async)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=10.0)

    def rpc(self, method: str, params: list[Any]) -> Any:
        answer = self.http.post(
            self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        ).json()
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer["result"]

    @property
    def account(self) -> str:
        return str(self.rpc("eth_accounts", [])[0])

    def deploy_weth(self, mine_at: int | None = None) -> str:
        bytecode = json.loads(WETH9_ARTIFACT.read_text())["bytecode"]
        tx = self.rpc(
            "eth_sendTransaction",
            [{"from": self.account, "data": "0x" + bytecode.removeprefix("0x"), "gas": "0x200000"}],
        )
        if mine_at is not None:
            self.rpc("evm_mine", [mine_at])
        return str(self.receipt(tx)["contractAddress"])

    def receipt(self, tx: str, within: float = 10.0) -> dict[str, Any]:
        """The receipt, polled with a deadline: anvil's automine answers before it has mined."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            receipt = self.rpc("eth_getTransactionReceipt", [tx])
            if receipt is not None:
                return dict(receipt)
            time.sleep(0.005)  # poll interval of a deadline-bounded wait
        raise AssertionError(f"no receipt for {tx} within {within}s")

    def deposit(self, weth: str, value: int = 1, mine_at: int | None = None) -> str:
        tx = str(
            self.rpc(
                "eth_sendTransaction",
                [
                    {
                        "from": self.account,
                        "to": weth,
                        "value": hex(value),
                        "data": DEPOSIT_SELECTOR,
                        "gas": "0x20000",
                    }
                ],
            )
        )
        if mine_at is not None:
            self.rpc("evm_mine", [mine_at])
        self.receipt(tx)
        return tx

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber", []), 16)

    def hash_at(self, number: int) -> str:
        return str(self.rpc("eth_getBlockByNumber", [hex(number), False])["hash"])

    def close(self) -> None:
        self.http.close()
