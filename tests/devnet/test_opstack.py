"""OP-stack fee contracts placed on anvil answer from the L1 values we wrote into L1Block."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.opstack import (
    GAS_PRICE_ORACLE_ADDRESS,
    L1_BLOCK_ADDRESS,
    L1BlockValues,
    install_op_stack_fee_contracts,
)
from mevstack.devnet.rpc import DevnetRpc

VALUES = L1BlockValues(basefee=12_345_678_901, blob_base_fee=987_654, sequence_number=3)


@pytest.fixture
def op_rpc(anvil: Anvil) -> Iterator[DevnetRpc]:
    with DevnetRpc(anvil.rpc_url) as rpc:
        snapshot = rpc.call("evm_snapshot")
        install_op_stack_fee_contracts(rpc, VALUES)
        try:
            yield rpc
        finally:
            assert rpc.call("evm_revert", [snapshot]) is True


def _fjord_upper_bound(values: L1BlockValues, unsigned_tx_size: int) -> int:
    """GasPriceOracle.getL1FeeUpperBound as the Fjord spec defines it (our own arithmetic)."""
    tx_size = unsigned_tx_size + 68
    fastlz_size = tx_size + tx_size // 255 + 16
    fee_scaled = (
        values.base_fee_scalar * 16 * values.basefee
        + values.blob_base_fee_scalar * values.blob_base_fee
    )
    estimated = max(100 * 10**6, -42_585_600 + 836_500 * fastlz_size)
    return estimated * fee_scaled // 10**12


def test_l1_block_reads_back(op_rpc: DevnetRpc) -> None:
    assert op_rpc.view(L1_BLOCK_ADDRESS, "number()", ["uint64"]) == VALUES.number
    assert op_rpc.view(L1_BLOCK_ADDRESS, "timestamp()", ["uint64"]) == VALUES.timestamp
    assert op_rpc.view(L1_BLOCK_ADDRESS, "basefee()", ["uint256"]) == VALUES.basefee
    assert op_rpc.view(L1_BLOCK_ADDRESS, "sequenceNumber()", ["uint64"]) == 3
    assert op_rpc.view(L1_BLOCK_ADDRESS, "blobBaseFee()", ["uint256"]) == VALUES.blob_base_fee
    assert op_rpc.view(L1_BLOCK_ADDRESS, "baseFeeScalar()", ["uint32"]) == VALUES.base_fee_scalar
    assert (
        op_rpc.view(L1_BLOCK_ADDRESS, "blobBaseFeeScalar()", ["uint32"])
        == VALUES.blob_base_fee_scalar
    )


def test_gas_price_oracle_answers(op_rpc: DevnetRpc) -> None:
    oracle = GAS_PRICE_ORACLE_ADDRESS
    assert op_rpc.view(oracle, "isEcotone()", ["bool"]) is True
    assert op_rpc.view(oracle, "isFjord()", ["bool"]) is True
    assert op_rpc.view(oracle, "l1BaseFee()", ["uint256"]) == VALUES.basefee
    assert op_rpc.view(oracle, "blobBaseFee()", ["uint256"]) == VALUES.blob_base_fee
    for size in (0, 200, 5_000):
        assert op_rpc.view(
            oracle, "getL1FeeUpperBound(uint256)", ["uint256"], size
        ) == _fjord_upper_bound(VALUES, size)
    small = op_rpc.view(oracle, "getL1Fee(bytes)", ["uint256"], b"\x01" * 10)
    large = op_rpc.view(oracle, "getL1Fee(bytes)", ["uint256"], bytes(range(256)) * 8)
    assert 0 < small < large
