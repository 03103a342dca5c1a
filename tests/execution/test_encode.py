"""Pure parts: packed path layout, argument checks, and the EIP-1559 base fee rule."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode

from mevstack.execution.encode import (
    EXECUTE,
    HOP_BYTES,
    ExecuteArgs,
    Hop,
    PathError,
    encode_execute,
    encode_path,
)
from mevstack.execution.simulate import next_base_fee

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
P1 = "0x" + "11" * 20
P2 = "0x" + "22" * 20


def test_path_is_packed_43_bytes_per_hop() -> None:
    hops = [
        Hop(P1, "uniswap_v2", A, B, True, 30),
        Hop(P2, "uniswap_v3", B, A, False, 500),
    ]
    packed = encode_path(hops)
    assert len(packed) == 2 * HOP_BYTES
    assert packed[:20] == bytes.fromhex("11" * 20)
    assert packed[20:40] == bytes.fromhex("bb" * 20)
    assert packed[40] == 0b10  # V2, zero_for_one
    assert int.from_bytes(packed[41:43], "big") == 30
    assert packed[43:63] == bytes.fromhex("22" * 20)
    assert packed[63:83] == bytes.fromhex("aa" * 20)
    assert packed[83] == 0b01  # V3, one_for_zero
    assert packed[84:86] == b"\x00\x00"


def test_execute_calldata_round_trips() -> None:
    hops = (Hop(P1, "uniswap_v2", A, B, True, 30), Hop(P2, "uniswap_v2", B, A, False, 25))
    args = ExecuteArgs(
        A, 10**18, hops, min_profit=7, coinbase_bps=100, flash=True, deadline_block=9
    )
    data = encode_execute(args)
    assert data[:4] == EXECUTE
    fields = decode(
        ["address", "uint256", "uint256", "uint256", "bool", "uint256", "bytes"], data[4:]
    )
    assert fields[1:6] == (10**18, 7, 100, True, 9)
    assert fields[6] == encode_path(list(hops))


@pytest.mark.parametrize(
    ("hops", "start", "flash", "message"),
    [
        ([], A, False, "1 to 5 hops"),
        (
            [Hop(P1, "uniswap_v2", A, B, True, 30), Hop(P2, "uniswap_v2", C, A, True, 30)],
            A,
            False,
            "hop 1 starts in",
        ),
        (
            [Hop(P1, "uniswap_v2", A, B, True, 30), Hop(P2, "uniswap_v2", B, C, True, 30)],
            A,
            False,
            "does not end in",
        ),
        (
            [Hop(P1, "uniswap_v3", A, B, True, 500), Hop(P2, "uniswap_v2", B, A, True, 30)],
            A,
            True,
            "flash mode needs",
        ),
        (
            [Hop(P1, "uniswap_v2", A, B, True, 10_000), Hop(P2, "uniswap_v2", B, A, True, 30)],
            A,
            False,
            "V2 fee",
        ),
        (
            [Hop("0x12", "uniswap_v2", A, B, True, 30), Hop(P2, "uniswap_v2", B, A, True, 30)],
            A,
            False,
            "not an address",
        ),
        (
            [Hop(P1, "uniswap_v2", A, B, True, 30), Hop(P2, "uniswap_v2", B, A, True, 30)],
            B,
            False,
            "start token",
        ),
        (
            [Hop(P1, "uniswap_v2", A, B, True, 30), Hop(P1, "uniswap_v2", B, A, False, 30)],
            A,
            True,
            "first pair again",
        ),
    ],
)
def test_bad_paths_are_errors(hops: list[Hop], start: str, flash: bool, message: str) -> None:
    with pytest.raises(PathError, match=message):
        encode_execute(ExecuteArgs(start, 10**18, tuple(hops), flash=flash))


def test_base_fee_rule() -> None:
    limit = 30_000_000
    assert next_base_fee(10**9, limit // 2, limit) == 10**9
    assert next_base_fee(10**9, limit, limit) == 1_125_000_000
    assert next_base_fee(10**9, 0, limit) == 875_000_000
    assert next_base_fee(7, limit // 2 + 1, limit) == 8  # the increase is at least 1 wei
    assert next_base_fee(10**9, 22_500_000, limit) == 1_062_500_000
