"""A local bundle relay stand-in: verifies requests like a Flashbots relay, builds like a builder.

It serves JSON-RPC over HTTP on a free port.  Every request must carry a valid
``X-Flashbots-Signature`` over its exact body (else error -32600, as Flashbots answers), and
``eth_sendBundle`` params must be ``[{"txs": [raw signed txs...], "blockNumber": "0x.."}]``
(else -32602).  A valid bundle is included on the anvil node in order, in exactly its target
block: automine off, the raw transactions sent in order, ``evm_mine``, automine on.  The node must
run with ``--order fifo`` so that the block keeps the bundle's order.

``received`` records every valid bundle as (target block, its transaction hashes in order).
``lose_blocks = n`` makes the next ``n`` target blocks go to "another builder": the block is mined
without the bundle, so the sender has to retarget.  ``eth_sendRawTransaction`` (the private
route) is forwarded to the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from eth_account import Account
from eth_utils.crypto import keccak
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mevstack.devnet.anvil import free_port
from mevstack.execution.relay_signing import HEADER, RelaySignatureError, verify_header


class BadParams(Exception):
    pass


@dataclass
class IncludedBundle:
    block: int
    tx_hashes: list[str]
    signer: str


@dataclass
class LocalRelay:
    rpc_url: str
    lose_blocks: int = 0
    included: list[IncludedBundle] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    received: list[tuple[int, list[str]]] = field(default_factory=list)
    requests: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    url: str = ""

    async def _node(self, method: str, params: list[Any]) -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = (
                await http.post(
                    self.rpc_url,
                    json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                )
            ).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message')}")
        return answer["result"]

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        body = await request.body()
        ident: Any = None
        try:
            doc = orjson.loads(body)
            ident = doc.get("id") if isinstance(doc, dict) else None
        except orjson.JSONDecodeError:
            return _error(None, -32700, "parse error")
        try:
            signer = verify_header(request.headers.get(HEADER), body)
        except RelaySignatureError as exc:
            return _error(ident, -32600, f"error in signature check: {exc}")
        method = doc.get("method")
        params = doc.get("params")
        try:
            if method == "eth_sendBundle":
                return _result(ident, await self._send_bundle(params, signer))
            if method == "eth_sendRawTransaction":
                if not isinstance(params, list) or len(params) != 1:
                    raise BadParams("expected [raw transaction]")
                _decode_tx(params[0])
                return _result(ident, await self._node("eth_sendRawTransaction", params))
        except BadParams as exc:
            return _error(ident, -32602, f"invalid params: {exc}")
        except RuntimeError as exc:
            return _error(ident, -32000, str(exc))
        return _error(ident, -32601, f"method {method!r} not found")

    async def _send_bundle(self, params: Any, signer: str) -> dict[str, str]:
        if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
            raise BadParams("expected [{txs, blockNumber}]")
        bundle = params[0]
        txs = bundle.get("txs")
        number = bundle.get("blockNumber")
        if not isinstance(txs, list) or not txs:
            raise BadParams("txs must be a non-empty list of signed transactions")
        hashes = [_decode_tx(raw) for raw in txs]
        if not isinstance(number, str) or not number.startswith("0x"):
            raise BadParams("blockNumber must be a hex quantity")
        try:
            block = int(number, 16)
        except ValueError:
            raise BadParams("blockNumber must be a hex quantity") from None
        bundle_hash = "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h in hashes)).hex()
        async with self._lock:
            head = int(await self._node("eth_blockNumber", []), 16)
            if block <= head:
                raise BadParams(f"blockNumber {block} is not in the future (head {head})")
            self.received.append((block, hashes))
            while head + 1 < block:  # time passes until the target slot
                await self._node("evm_mine", [])
                head += 1
            if self.lose_blocks > 0:
                self.lose_blocks -= 1
                self.lost.append(block)
                await self._node("evm_mine", [])
                return {"bundleHash": bundle_hash}
            await self._build(txs, hashes, block, signer)
        return {"bundleHash": bundle_hash}

    async def _send_raw(self, raw: str, expected: str) -> bool:
        """Queue one bundle transaction (whether it was new to the node); one the node already
        holds as pending (a backrun's trigger seen in the public mempool) is taken from there,
        as a builder would, and is left there if the bundle fails."""
        try:
            await self._node("eth_sendRawTransaction", [raw])
            return True
        except RuntimeError:
            known = await self._node("eth_getTransactionByHash", [expected])
            if isinstance(known, dict) and not known.get("blockNumber"):
                return False
            raise

    async def _build(self, txs: list[str], hashes: list[str], block: int, signer: str) -> None:
        await self._node("evm_setAutomine", [False])
        sent: list[str] = []
        try:
            for raw, expected in zip(txs, hashes, strict=True):
                if await self._send_raw(raw, expected):
                    sent.append(expected)
        except RuntimeError:
            # a bundle is all or nothing: drop what was queued and mine the slot without it
            for tx in sent:
                await self._node("anvil_dropTransaction", [tx])
            await self._node("evm_mine", [])
            return
        finally:
            await self._node("evm_setAutomine", [True])
        await self._node("evm_mine", [])
        self.included.append(IncludedBundle(block, hashes, signer))

    async def start(self) -> str:
        app = Starlette(routes=[Route("/", self.handle, methods=["POST"])])
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise RuntimeError("local relay did not start")
            await asyncio.sleep(0.01)  # polling the server's started flag with a deadline
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _decode_tx(raw: object) -> str:
    if not isinstance(raw, str) or not raw.startswith("0x"):
        raise BadParams("each transaction must be a 0x-prefixed hex string")
    try:
        data = bytes.fromhex(raw[2:])
        Account.recover_transaction(data)
    except Exception:
        raise BadParams("transaction is not a valid signed transaction") from None
    return "0x" + keccak(data).hex()


def _result(ident: Any, result: Any) -> Response:
    return Response(
        orjson.dumps({"jsonrpc": "2.0", "id": ident, "result": result}),
        media_type="application/json",
    )


def _error(ident: Any, code: int, message: str) -> Response:
    return Response(
        orjson.dumps({"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}),
        media_type="application/json",
    )
