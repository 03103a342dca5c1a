"""Loading the shipped contract artifacts (npm packages under the repo) and compiling our Vyper.

Two artifact layouts exist under ``node_modules``: waffle/truffle ``build/*.json`` (Uniswap V2,
``bytecode`` without ``0x``) and Hardhat/Foundry ``artifacts/**.json`` (Uniswap V3, OP-stack;
``bytecode`` a hex string or ``{"object": ...}``).  Both load into one ``Artifact``.  Our own Vyper
contracts are compiled at run time (bytecode is never committed) and cached in memory.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mevstack.devnet.anvil import REPO_ROOT
from mevstack.errors import DevnetError

NODE_MODULES = REPO_ROOT / "node_modules"
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"

# Package-relative names of every shipped artifact the devnet deploys.
WETH9 = "@uniswap/v2-periphery/build/WETH9.json"
V2_FACTORY = "@uniswap/v2-core/build/UniswapV2Factory.json"
V2_PAIR = "@uniswap/v2-core/build/UniswapV2Pair.json"
V2_ROUTER02 = "@uniswap/v2-periphery/build/UniswapV2Router02.json"
V3_FACTORY = "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"
V3_POOL = "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json"
V3_SWAP_ROUTER = "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json"
V3_POSITION_MANAGER = (
    "@uniswap/v3-periphery/artifacts/contracts/"
    "NonfungiblePositionManager.sol/NonfungiblePositionManager.json"
)
V3_QUOTER_V2 = "@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json"
V3_TICK_LENS = "@uniswap/v3-periphery/artifacts/contracts/lens/TickLens.sol/TickLens.json"
OP_L1_BLOCK = "@eth-optimism/contracts-bedrock/forge-artifacts/L1Block.sol/L1Block.json"
OP_GAS_PRICE_ORACLE = (
    "@eth-optimism/contracts-bedrock/forge-artifacts/GasPriceOracle.sol/GasPriceOracle.json"
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A contract's ABI, creation bytecode and (when shipped) runtime bytecode."""

    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes = b""
    storage_layout: dict[str, Any] | None = None


def _hex(value: object) -> bytes:
    if isinstance(value, dict):
        value = value.get("object", "")
    if not isinstance(value, str):
        return b""
    text = value[2:] if value.startswith("0x") else value
    if "__" in text:
        raise DevnetError("artifact bytecode has unlinked library references")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise DevnetError(f"artifact bytecode is not hex: {exc}") from None


@functools.cache
def load_artifact(package_relative_name: str) -> Artifact:
    """Load ``node_modules/<package_relative_name>`` (e.g. ``@uniswap/v2-core/build/X.json``)."""
    path = NODE_MODULES / package_relative_name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevnetError(f"artifact {path} not found: run `make setup`") from None
    except (OSError, ValueError) as exc:
        raise DevnetError(f"artifact {path} cannot be read: {exc}") from None
    deployed = raw.get("deployedBytecode")
    if deployed is None and isinstance(raw.get("evm"), dict):
        deployed = raw["evm"].get("deployedBytecode")
    bytecode = _hex(raw.get("bytecode"))
    if not bytecode:
        raise DevnetError(f"artifact {path} has no creation bytecode")
    layout = raw.get("storageLayout")
    return Artifact(
        abi=list(raw.get("abi", [])),
        bytecode=bytecode,
        deployed_bytecode=_hex(deployed),
        storage_layout=layout if isinstance(layout, dict) else None,
    )


@functools.cache
def compile_vyper(contract_name: str) -> Artifact:
    """Compile ``devnet/contracts/<contract_name>.vy`` with the installed vyper (cached)."""
    path = CONTRACTS_DIR / f"{contract_name}.vy"
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DevnetError(f"contract source {path} not found") from None
    import vyper  # imported lazily: loading the compiler costs ~1 s

    try:
        out = vyper.compile_code(source, output_formats=["abi", "bytecode", "bytecode_runtime"])
    except Exception as exc:  # the compiler raises many unrelated types; one line is enough
        raise DevnetError(f"vyper failed to compile {path.name}: {exc}") from None
    return Artifact(
        abi=list(out["abi"]),
        bytecode=_hex(out["bytecode"]),
        deployed_bytecode=_hex(out["bytecode_runtime"]),
    )
