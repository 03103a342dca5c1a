"""Next-base-fee rules on recorded real headers, to the wei, and rule selection by node and fork.

Recorded values (public block data, as found in public test fixtures):

* Ethereum 12,965,000 (London's first block): gasLimit 0x1ca3542, gasUsed 0x1ca2629,
  baseFeePerGas 0x3b9aca00; its child 12,965,001 has baseFeePerGas 0x430da58e.
* OP Mainnet 134,217,728 (0x8000000, Holocene era): extraData 0x00000000fa00000006.
* Base 29,139,628 (0x1bca2ac): extraData 0x00000000fa00000002, gasLimit 0x7270e00,
  gasUsed 0x56fce26, baseFeePerGas 0xaae54.
* Arbitrum One 201,326,592 (0xc000000): baseFeePerGas 0x989680 (ArbOS's 0.01 gwei floor).
"""

from __future__ import annotations

import pytest

from mevstack.chain.basefee import (
    CANYON_TIME,
    HOLOCENE_TIME,
    OP_BEDROCK_PARAMS,
    OP_CANYON_PARAMS,
    Eip1559Params,
    ExtraDataError,
    ParentHeader,
    decode_op_extra_data,
    eip1559_next_base_fee,
    rule_for,
)
from mevstack.chain.gas import parent_header

LONDON_PARENT = {
    "number": "0xc5d488",
    "timestamp": "0x610bdaa6",
    "gasLimit": "0x1ca3542",
    "gasUsed": "0x1ca2629",
    "baseFeePerGas": "0x3b9aca00",
    "extraData": "0x68747470733a2f2f7777772e6b7279707465782e6f7267",
}
LONDON_CHILD_BASE_FEE = 0x430DA58E

BASE_29139628 = {
    "number": "0x1bca2ac",
    "timestamp": "0x6803a23b",
    "gasLimit": "0x7270e00",
    "gasUsed": "0x56fce26",
    "baseFeePerGas": "0xaae54",
    "extraData": "0x00000000fa00000002",
}
OP_0X8000000 = {
    "number": "0x8000000",
    "timestamp": "0x67f3d9b9",
    "gasLimit": "0x3938700",
    "gasUsed": "0xf66210",
    "baseFeePerGas": "0x719d12",
    "extraData": "0x00000000fa00000006",
}


def test_london_recorded_pair_to_the_wei() -> None:
    rule = rule_for(1, "Geth/v1.14.0-stable/linux-amd64/go1.22")
    assert rule.kind == "ethereum"
    assert rule.next_base_fee(parent_header(LONDON_PARENT)) == LONDON_CHILD_BASE_FEE


def test_eip1559_edges() -> None:
    eth = Eip1559Params(8, 2)
    assert eip1559_next_base_fee(10**9, 15_000_000, 30_000_000, eth) == 10**9  # at target
    assert eip1559_next_base_fee(10**9, 30_000_000, 30_000_000, eth) == 1_125_000_000  # full
    assert eip1559_next_base_fee(10**9, 0, 30_000_000, eth) == 875_000_000  # empty
    # a tiny excess still raises the fee by at least 1 wei; a tiny shortfall may not lower it
    assert eip1559_next_base_fee(7, 15_000_001, 30_000_000, eth) == 8
    assert eip1559_next_base_fee(7, 14_999_999, 30_000_000, eth) == 7
    assert eip1559_next_base_fee(0, 0, 30_000_000, eth) == 0
    assert eip1559_next_base_fee(5, 0, 1, eth) == 5  # target 0: unchanged
    assert eip1559_next_base_fee(100, 0, 30_000_000, Eip1559Params(8, 2, 99)) == 99  # Jovian floor


def test_op_stack_parameters_by_fork_and_from_extra_data() -> None:
    rule = rule_for(10, "op-geth/v1.101411.4-stable")
    assert rule.kind == "op_stack"
    pre_canyon = ParentHeader(1, CANYON_TIME - 10, 0, 30_000_000, 10**9)
    assert rule.params_for(pre_canyon) == OP_BEDROCK_PARAMS
    canyon = ParentHeader(2, CANYON_TIME + 2, 0, 30_000_000, 10**9)
    assert rule.params_for(canyon) == OP_CANYON_PARAMS
    assert rule.params_for(parent_header(OP_0X8000000)) == Eip1559Params(250, 6)
    base = parent_header(BASE_29139628)
    assert rule_for(8453).params_for(base) == Eip1559Params(250, 2)
    # Base's elasticity 2: target 60M gas; 91,213,350 used -> +1/250 of the relative excess
    target = 120_000_000 // 2
    expected = 0xAAE54 + 0xAAE54 * (0x56FCE26 - target) // target // 250
    assert rule_for(8453).next_base_fee(base) == expected
    # the same header read with Canyon's constant 250/6 would predict something else
    canyon_reading = eip1559_next_base_fee(
        base.base_fee, base.gas_used, base.gas_limit, OP_CANYON_PARAMS
    )
    assert canyon_reading != expected


def test_holocene_and_jovian_extra_data() -> None:
    assert decode_op_extra_data(bytes.fromhex("00000000fa00000006")) == Eip1559Params(250, 6)
    jovian = bytes.fromhex("01000000fa000000060000000000000000")
    assert decode_op_extra_data(jovian) == Eip1559Params(250, 6, 0)
    jovian_floor = bytes.fromhex("0100000032000000040000000000000007")
    assert decode_op_extra_data(jovian_floor) == Eip1559Params(50, 4, 7)
    for bad in (
        "00000000fa000000",  # too short
        "0000000000000000fa",  # elasticity without denominator
        "02000000fa00000006",  # unknown version
        "01000000fa00000000" + "00" * 8,  # denominator without elasticity
    ):
        with pytest.raises(ExtraDataError):
            decode_op_extra_data(bytes.fromhex(bad))
    # 0/0 means "the chain's defaults" (Canyon's 250/6); Jovian's floor still applies
    holocene = ParentHeader(1, HOLOCENE_TIME + 5, 0, 30_000_000, 10**9, bytes(9))
    assert rule_for(10).params_for(holocene) == OP_CANYON_PARAMS
    floor = bytes.fromhex("01" + "00" * 8 + "0000000000000064")
    jovian_parent = ParentHeader(1, HOLOCENE_TIME + 5, 0, 30_000_000, 10**9, floor)
    assert rule_for(10).params_for(jovian_parent) == Eip1559Params(250, 6, 100)
    with pytest.raises(ExtraDataError):
        rule_for(10).params_for(ParentHeader(1, HOLOCENE_TIME + 5, 0, 30_000_000, 10**9))


def test_arbitrum_reports_current_value_and_no_prediction() -> None:
    arbitrum_block = {
        "number": "0xc000000",
        "timestamp": "0x661d51b9",
        "gasLimit": "0x4000000000000",
        "gasUsed": "0x3c1d21",
        "baseFeePerGas": "0x989680",
        "extraData": "0x" + "f0" * 32,
    }
    rule = rule_for(42161, "nitro/v3.5.5")
    assert rule.kind == "arbitrum"
    parent = parent_header(arbitrum_block)
    assert parent.base_fee == 10_000_000
    assert rule.next_base_fee(parent) is None


def test_devnet_follows_the_node_not_the_chain_id() -> None:
    assert rule_for(10, "anvil/v1.7.1").kind == "ethereum"
    assert rule_for(42161, "anvil/v1.7.1").kind == "ethereum"
    assert rule_for(10, None).kind == "op_stack"
    assert (
        rule_for(137).kind == "none"
        and rule_for(137).next_base_fee(parent_header(LONDON_PARENT)) is None
    )
    assert rule_for(10, "anvil/v1.7.1", kind="op_stack").kind == "op_stack"
