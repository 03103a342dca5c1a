"""Raw JSON-RPC for the devnet tooling: calls, batches, and transactions from unlocked accounts.

Deployment and market activity talk to anvil directly (synchronous httpx, one pooled client per
chain) rather than through the engine's async client: they run before the engine exists, in
plain threads, and every transaction is confirmed by its receipt before the next depends on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevstack.errors import DevnetError


def selector(signature: str) -> bytes:
    """The 4-byte function selector of e.g. ``transfer(address,uint256)``."""
    return keccak(text=signature)[:4]


def _arg_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    # Only top-level commas separate arguments; tuples keep theirs.
    types, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            types.append(inner[start:i])
            start = i + 1
    if inner:
        types.append(inner[start:])
    return types


def encode_call(signature: str, *args: Any) -> bytes:
    """Calldata for ``signature`` (canonical types, tuples as ``(t1,t2)``) with ``args``."""
    return selector(signature) + encode(_arg_types(signature), list(args))


def encode_args(types: Sequence[str], *args: Any) -> bytes:
    return encode(list(types), list(args))


def decode_result(types: Sequence[str], data: bytes) -> tuple[Any, ...]:
    """Decode return data; ``address`` and ``address[]`` values come back checksummed."""
    values = []
    for kind, value in zip(types, decode(list(types), data), strict=True):
        if kind == "address":
            value = to_checksum_address(value)
        elif kind == "address[]":
            value = [to_checksum_address(v) for v in value]
        values.append(value)
    return tuple(values)


def hexdata(data: bytes) -> str:
    return "0x" + data.hex()


def create_address(sender: str, nonce: int) -> str:
    """The address CREATE gives the contract deployed by ``sender`` at ``nonce``."""
    import rlp

    return str(to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]))


def create2_address(deployer: str, salt: bytes, init_code_hash: bytes) -> str:
    digest = keccak(b"\xff" + bytes.fromhex(deployer[2:]) + salt + init_code_hash)
    return str(to_checksum_address(digest[12:]))


class DevnetRpc:
    """A synchronous JSON-RPC client bound to one anvil node."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)
        self._id = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DevnetRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, payload: object) -> Any:
        try:
            response = self._client.post(self.url, json=payload)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as exc:
            raise DevnetError(f"node {self.url} unreachable: {exc}") from None
        except ValueError:
            raise DevnetError(f"node {self.url} answered with invalid JSON") from None

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        self._id += 1
        answer = self._post(
            {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []}
        )
        if "error" in answer:
            err = answer["error"]
            raise DevnetError(f"{method} failed on {self.url}: {err.get('message', err)}")
        return answer.get("result")

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request; any error fails the whole batch."""
        if not calls:
            return []
        base = self._id + 1
        self._id += len(calls)
        payload = [
            {"jsonrpc": "2.0", "id": base + i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls)
        ]
        answers = self._post(payload)
        by_id = {a.get("id"): a for a in answers}
        results = []
        for i, (method, _) in enumerate(calls):
            answer = by_id.get(base + i)
            if answer is None or "error" in answer:
                err = (answer or {}).get("error", "no answer")
                raise DevnetError(f"{method} failed on {self.url}: {err}")
            results.append(answer.get("result"))
        return results

    def eth_call(self, to: str, data: bytes, block: str = "latest") -> bytes:
        result = self.call("eth_call", [{"to": to, "data": hexdata(data)}, block])
        return bytes.fromhex(str(result)[2:])

    def view(self, to: str, signature: str, out_types: Sequence[str], *args: Any) -> Any:
        """Call a view function; a single return value is unwrapped."""
        values = decode_result(out_types, self.eth_call(to, encode_call(signature, *args)))
        return values[0] if len(values) == 1 else values

    def send(
        self,
        sender: str,
        to: str | None,
        data: bytes = b"",
        *,
        value: int = 0,
        gas: int | None = None,
    ) -> str:
        """Send from an unlocked account; returns the transaction hash (not yet confirmed)."""
        tx: dict[str, Any] = {"from": sender, "data": hexdata(data), "value": hex(value)}
        if to is not None:
            tx["to"] = to
        if gas is None:
            # The estimate is taken in the pending block's context; if the block is mined in a
            # later second, a V2 pair's first swap of that block also writes its price
            # accumulators (cold SSTOREs the estimate did not see), so leave headroom.
            estimate = int(self.call("eth_estimateGas", [tx]), 16)
            gas = estimate * 5 // 4 + 50_000
        tx["gas"] = hex(gas)
        return str(self.call("eth_sendTransaction", [tx]))

    def wait_receipts(
        self, tx_hashes: Sequence[str], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll (batched) until every receipt exists; a reverted transaction is an error."""
        deadline = time.monotonic() + timeout
        receipts: dict[str, dict[str, Any]] = {}
        pending = list(tx_hashes)
        while pending:
            answers = self.batch([("eth_getTransactionReceipt", [h]) for h in pending])
            for tx_hash, receipt in zip(pending, answers, strict=True):
                if receipt is not None:
                    if int(receipt["status"], 16) != 1:
                        raise DevnetError(f"transaction {tx_hash} reverted on {self.url}")
                    receipts[tx_hash] = receipt
            pending = [h for h in pending if h not in receipts]
            if pending:
                if time.monotonic() > deadline:
                    raise DevnetError(f"{len(pending)} transaction(s) not mined on {self.url}")
                # Polling a node for receipts: the pause only bounds request rate.
                time.sleep(0.01)
        return [receipts[h] for h in tx_hashes]

    def transact(
        self, sender: str, to: str | None, data: bytes = b"", *, value: int = 0
    ) -> dict[str, Any]:
        """Send and wait for the receipt (the node estimates gas, so a revert names itself)."""
        return self.wait_receipts([self.send(sender, to, data, value=value)])[0]


class AccountSender:
    """Sends transactions from one unlocked account with locally tracked nonces.

    Explicit nonces and gas limits let dependent transactions go out back to back (no gas
    estimation against a state that does not exist yet); ``confirm`` then checks them all.
    """

    def __init__(self, rpc: DevnetRpc, account: str) -> None:
        self.rpc = rpc
        self.account = account
        self.nonce = int(rpc.call("eth_getTransactionCount", [account, "pending"]), 16)
        self.pending: list[str] = []

    def next_address(self) -> str:
        return create_address(self.account, self.nonce)

    def send(
        self, to: str | None, data: bytes, *, value: int = 0, gas: int, track: bool = True
    ) -> str:
        """Send with the next nonce; ``track`` adds it to what ``confirm`` waits for."""
        tx: dict[str, Any] = {
            "from": self.account,
            "data": "0x" + data.hex(),
            "value": hex(value),
            "gas": hex(gas),
            "nonce": hex(self.nonce),
        }
        if to is not None:
            tx["to"] = to
        self.nonce += 1
        tx_hash = str(self.rpc.call("eth_sendTransaction", [tx]))
        if track:
            self.pending.append(tx_hash)
        return tx_hash

    def resync(self) -> None:
        """Take the nonce from the node again (after a send failed part-way)."""
        self.nonce = int(self.rpc.call("eth_getTransactionCount", [self.account, "pending"]), 16)

    def deploy(self, bytecode: bytes, ctor: bytes = b"", *, gas: int = 6_000_000) -> str:
        address = self.next_address()
        self.send(None, bytecode + ctor, gas=gas)
        return address

    def confirm(self) -> list[dict[str, Any]]:
        pending, self.pending = self.pending, []
        return self.rpc.wait_receipts(pending)
