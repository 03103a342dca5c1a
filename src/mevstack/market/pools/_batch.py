"""Batched eth_calls at one block, in chunks a node accepts, failing on the first error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc

BATCH_SIZE = 500


async def eth_calls(rpc: JsonRpc, calls: Sequence[tuple[str, str]], block_number: int) -> list[str]:
    """The return data of each ``(to, data)`` call at ``block_number``, in order."""
    block = hex(block_number)
    out: list[str] = []
    for start in range(0, len(calls), BATCH_SIZE):
        chunk = calls[start : start + BATCH_SIZE]
        payload: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": to, "data": data}, block]) for to, data in chunk
        ]
        for result in await rpc.batch(payload):
            if isinstance(result, RpcError):
                raise result
            out.append(str(result))
    return out
