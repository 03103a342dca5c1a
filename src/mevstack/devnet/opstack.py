"""OP-stack fee contracts on an anvil chain: L1Block and GasPriceOracle at their predeploys.

The real contracts-bedrock runtime bytecode is placed with ``anvil_setCode`` and L1Block's storage
is written directly (on a real OP chain the sequencer's deposit transaction sets it each block),
using the storage layout shipped in the forge artifact:

* slot 0: ``number`` (uint64, bytes 0-7) | ``timestamp`` (uint64, bytes 8-15)
* slot 1: ``basefee`` · slot 2: ``hash`` · slot 7: ``blobBaseFee``
* slot 3: ``sequenceNumber`` (uint64, 0-7) | ``blobBaseFeeScalar`` (uint32, 8-11) |
  ``baseFeeScalar`` (uint32, 12-15)

GasPriceOracle's own slot 0 holds ``isEcotone`` (byte 0) and ``isFjord`` (byte 1); both are set so
``getL1Fee`` uses the current (Fjord) formula.  Offsets are checked against the artifact's
``storageLayout`` at run time, so a different bedrock version fails loudly instead of silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from mevstack.devnet import artifacts
from mevstack.devnet.rpc import DevnetRpc
from mevstack.errors import DevnetError

L1_BLOCK_ADDRESS = "0x4200000000000000000000000000000000000015"
GAS_PRICE_ORACLE_ADDRESS = "0x420000000000000000000000000000000000000F"


@dataclass(frozen=True, slots=True)
class L1BlockValues:
    """The L1 origin values the L1 fee depends on (defaults: OP Mainnet-like Ecotone scalars)."""

    number: int = 21_000_000
    timestamp: int = 1_730_000_000
    basefee: int = 8_000_000_000  # 8 gwei
    blob_base_fee: int = 1_000_000  # blob gas is nearly free most of the time
    base_fee_scalar: int = 5_227
    blob_base_fee_scalar: int = 1_014_213
    sequence_number: int = 0
    hash: bytes = b"\x11" * 32


# (label, slot, byte offset) that the packing below assumes.
_EXPECTED_L1_LAYOUT = {
    "number": (0, 0),
    "timestamp": (0, 8),
    "basefee": (1, 0),
    "hash": (2, 0),
    "sequenceNumber": (3, 0),
    "blobBaseFeeScalar": (3, 8),
    "baseFeeScalar": (3, 12),
    "blobBaseFee": (7, 0),
}
_EXPECTED_ORACLE_LAYOUT = {"isEcotone": (0, 0), "isFjord": (0, 1)}


def _check_layout(artifact: artifacts.Artifact, expected: dict[str, tuple[int, int]]) -> None:
    layout = artifact.storage_layout or {}
    found = {
        entry["label"]: (int(entry["slot"]), int(entry["offset"]))
        for entry in layout.get("storage", [])
    }
    for label, place in expected.items():
        if found.get(label) != place:
            raise DevnetError(
                f"OP-stack artifact storage layout changed: {label} at {found.get(label)}, "
                f"expected slot/offset {place}"
            )


def l1_block_storage(values: L1BlockValues) -> dict[int, int]:
    """Slot -> 256-bit word for L1Block holding ``values`` (solidity packs from the low end)."""
    return {
        0: values.number | values.timestamp << 64,
        1: values.basefee,
        2: int.from_bytes(values.hash, "big"),
        3: values.sequence_number
        | values.blob_base_fee_scalar << 64
        | values.base_fee_scalar << 96,
        7: values.blob_base_fee,
    }


ORACLE_STORAGE = {0: 1 | 1 << 8}  # isEcotone = isFjord = true


def install_op_stack_fee_contracts(rpc: DevnetRpc, values: L1BlockValues | None = None) -> None:
    """Place L1Block and GasPriceOracle at their predeploys and fill L1Block's storage."""
    l1_block = artifacts.load_artifact(artifacts.OP_L1_BLOCK)
    oracle = artifacts.load_artifact(artifacts.OP_GAS_PRICE_ORACLE)
    _check_layout(l1_block, _EXPECTED_L1_LAYOUT)
    _check_layout(oracle, _EXPECTED_ORACLE_LAYOUT)
    calls: list[tuple[str, list[object]]] = [
        ("anvil_setCode", [L1_BLOCK_ADDRESS, "0x" + l1_block.deployed_bytecode.hex()]),
        ("anvil_setCode", [GAS_PRICE_ORACLE_ADDRESS, "0x" + oracle.deployed_bytecode.hex()]),
    ]
    for address, storage in (
        (L1_BLOCK_ADDRESS, l1_block_storage(values or L1BlockValues())),
        (GAS_PRICE_ORACLE_ADDRESS, ORACLE_STORAGE),
    ):
        for slot, word in storage.items():
            calls.append(
                ("anvil_setStorageAt", [address, hex(slot), "0x" + word.to_bytes(32, "big").hex()])
            )
    rpc.batch(calls)
