"""Calldata for the tests, encoded from the real ABIs shipped in node_modules (not our tables)."""

from __future__ import annotations

import functools
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from mevstack.devnet import artifacts

PAIR = artifacts.V2_PAIR
POOL = artifacts.V3_POOL
ROUTER02 = artifacts.V2_ROUTER02
SWAP_ROUTER = artifacts.V3_SWAP_ROUTER


def _type(entry: dict[str, Any]) -> str:
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type(c) for c in entry["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@functools.cache
def functions(artifact: str) -> dict[str, tuple[str, list[str]]]:
    """Function name -> (canonical signature, input types), from the artifact's ABI."""
    out: dict[str, tuple[str, list[str]]] = {}
    for entry in artifacts.load_artifact(artifact).abi:
        if entry.get("type") == "function":
            types = [_type(i) for i in entry["inputs"]]
            out[entry["name"]] = (f"{entry['name']}({','.join(types)})", types)
    return out


def calldata(artifact: str, name: str, *args: Any) -> bytes:
    signature, types = functions(artifact)[name]
    return keccak(text=signature)[:4] + abi_encode(types, list(args))


def v3_path(*parts: str | int) -> bytes:
    """Packed V3 path: token, fee, token, fee, token ..."""
    out = b""
    for part in parts:
        if isinstance(part, int):
            out += part.to_bytes(3, "big")
        else:
            out += bytes.fromhex(part[2:])
    return out
