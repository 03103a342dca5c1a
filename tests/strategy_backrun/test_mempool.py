"""Decoding pending swaps: calldata built from the real router, pair and pool ABIs."""

from __future__ import annotations

import random

import pytest

from mevstack.strategy.mempool import (
    V2_PAIR_SWAP,
    V2_ROUTER_SWAPS,
    V3_MULTICALL,
    V3_POOL_SWAP,
    V3_ROUTER_SWAPS,
    SwapHop,
    decode_calldata,
    decode_transaction,
)
from tests.strategy.pools import addr
from tests.strategy_backrun.abi import (
    PAIR,
    POOL,
    ROUTER02,
    SWAP_ROUTER,
    calldata,
    functions,
    v3_path,
)

ROUTER = addr(0x1111)
A, B, C, WETH = addr(0xA), addr(0xB), addr(0xC), addr(0xE)
ME = addr(0x777)
DEADLINE = 1_900_000_000


def test_our_signatures_are_the_shipped_abis() -> None:
    shipped = {sig for sig, _ in functions(ROUTER02).values()}
    assert set(V2_ROUTER_SWAPS) <= shipped
    # every swap function of Router02 is understood
    assert {s for s in shipped if s.startswith("swap")} == set(V2_ROUTER_SWAPS)
    v3 = {sig for sig, _ in functions(SWAP_ROUTER).values()}
    assert {*V3_ROUTER_SWAPS, V3_MULTICALL} <= v3
    assert {s for s in v3 if s.startswith("exact")} == set(V3_ROUTER_SWAPS)
    assert functions(PAIR)["swap"][0] == V2_PAIR_SWAP
    assert functions(POOL)["swap"][0] == V3_POOL_SWAP


# name, args, exact_in, amount_in, amount_out, native_in, native_out
V2_CASES = [
    ("swapExactTokensForTokens", (10, 7, [A, B, C], ME, DEADLINE), True, 10, 7, False, False),
    ("swapTokensForExactTokens", (7, 10, [A, B], ME, DEADLINE), False, 10, 7, False, False),
    ("swapExactETHForTokens", (7, [WETH, A], ME, DEADLINE), True, 55, 7, True, False),
    ("swapTokensForExactETH", (7, 10, [A, WETH], ME, DEADLINE), False, 10, 7, False, True),
    ("swapExactTokensForETH", (10, 7, [A, WETH], ME, DEADLINE), True, 10, 7, False, True),
    ("swapETHForExactTokens", (7, [WETH, A], ME, DEADLINE), False, 55, 7, True, False),
    ("swapExactTokensForTokensSupportingFeeOnTransferTokens", (10, 7, [A, B], ME, DEADLINE),
     True, 10, 7, False, False),
    ("swapExactETHForTokensSupportingFeeOnTransferTokens", (7, [WETH, A], ME, DEADLINE),
     True, 55, 7, True, False),
    ("swapExactTokensForETHSupportingFeeOnTransferTokens", (10, 7, [A, WETH], ME, DEADLINE),
     True, 10, 7, False, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "args", "exact_in", "amount_in", "amount_out", "native_in", "native_out"), V2_CASES
)
def test_router02_swaps(
    name: str,
    args: tuple[object, ...],
    exact_in: bool,
    amount_in: int,
    amount_out: int,
    native_in: bool,
    native_out: bool,
) -> None:
    value = 55 if native_in else 0
    swaps = decode_calldata(ROUTER, calldata(ROUTER02, name, *args), value)
    assert swaps is not None and len(swaps) == 1
    intent = swaps[0]
    path = next(a for a in args if isinstance(a, list))
    assert intent.venue == "uniswap_v2_router" and intent.method == name
    assert intent.target == ROUTER and intent.recipient == ME and intent.deadline == DEADLINE
    assert intent.tokens == tuple(path)
    assert [h.fee for h in intent.path] == [None] * (len(path) - 1)
    assert (intent.exact_in, intent.amount_in, intent.amount_out) == (
        exact_in,
        amount_in,
        amount_out,
    )
    assert (intent.native_in, intent.native_out) == (native_in, native_out)
    assert intent.fee_on_transfer == name.endswith("SupportingFeeOnTransferTokens")
    assert intent.value == value


def test_swap_router_single_and_packed_paths() -> None:
    single = (A, B, 500, ME, DEADLINE, 10**18, 3, 12345)
    (ein,) = decode_calldata(ROUTER, calldata(SWAP_ROUTER, "exactInputSingle", single)) or ()
    assert ein.path == (SwapHop(A, B, 500),) and ein.exact_in
    assert (ein.amount_in, ein.amount_out, ein.sqrt_price_limit_x96) == (10**18, 3, 12345)
    (eout,) = decode_calldata(ROUTER, calldata(SWAP_ROUTER, "exactOutputSingle", single)) or ()
    # exactOutputSingle: (amountOut, amountInMaximum)
    assert not eout.exact_in and (eout.amount_out, eout.amount_in) == (10**18, 3)

    multi = (v3_path(A, 3000, B, 500, C), ME, DEADLINE, 10**6, 9)
    (mi,) = decode_calldata(ROUTER, calldata(SWAP_ROUTER, "exactInput", multi)) or ()
    assert mi.path == (SwapHop(A, B, 3000), SwapHop(B, C, 500))
    assert (mi.amount_in, mi.amount_out, mi.sqrt_price_limit_x96) == (10**6, 9, 0)
    # exactOutput's path is written output first: decoded into trading order C -> B -> A
    (mo,) = decode_calldata(ROUTER, calldata(SWAP_ROUTER, "exactOutput", multi)) or ()
    assert mo.path == (SwapHop(C, B, 500), SwapHop(B, A, 3000)) and mo.tokens == (C, B, A)
    assert not mo.exact_in and (mo.amount_out, mo.amount_in) == (10**6, 9)


def test_multicall_keeps_the_swaps_in_order_and_skips_helpers() -> None:
    first = calldata(SWAP_ROUTER, "exactInputSingle", (A, B, 500, ME, DEADLINE, 5, 0, 0))
    refund = calldata(SWAP_ROUTER, "refundETH")
    second = calldata(SWAP_ROUTER, "exactOutput", (v3_path(C, 3000, B), ME, DEADLINE, 8, 9))
    swaps = decode_calldata(ROUTER, calldata(SWAP_ROUTER, "multicall", [first, refund, second]), 77)
    assert swaps is not None
    assert [s.method for s in swaps] == ["exactInputSingle", "exactOutput"]
    assert swaps[1].path == (SwapHop(B, C, 3000),) and all(s.value == 77 for s in swaps)
    assert decode_calldata(ROUTER, calldata(SWAP_ROUTER, "multicall", [refund])) is None


def test_direct_pool_calls() -> None:
    (pair,) = decode_calldata(ROUTER, calldata(PAIR, "swap", 0, 99, ME, b"")) or ()
    assert pair.venue == "uniswap_v2_pair" and not pair.exact_in and pair.amount_out == 99
    assert pair.path == (SwapHop(None, None, pool=ROUTER, zero_for_one=True),)
    (other,) = decode_calldata(ROUTER, calldata(PAIR, "swap", 98, 0, ME, b"\x01")) or ()
    assert other.path[0].zero_for_one is False and other.callback_data == b"\x01"
    assert decode_calldata(ROUTER, calldata(PAIR, "swap", 1, 1, ME, b"")) is None

    (pin,) = decode_calldata(ROUTER, calldata(POOL, "swap", ME, False, 5000, 77, b"x")) or ()
    assert pin.venue == "uniswap_v3_pool" and pin.exact_in and pin.amount_in == 5000
    assert pin.path[0].zero_for_one is False and pin.sqrt_price_limit_x96 == 77
    (pout,) = decode_calldata(ROUTER, calldata(POOL, "swap", ME, True, -4000, 1, b"")) or ()
    assert not pout.exact_in and pout.amount_out == 4000 and pout.path[0].zero_for_one


def test_garbage_is_none_never_an_exception() -> None:
    good = calldata(ROUTER02, "swapExactTokensForTokens", 10, 7, [A, B], ME, DEADLINE)
    rng = random.Random(5)
    assert decode_calldata(ROUTER, b"") is None
    assert decode_calldata(ROUTER, b"\x12\x34\x56\x78" + bytes(64)) is None
    assert decode_calldata(ROUTER, calldata(ROUTER02, "factory")) is None
    assert decode_calldata("not an address", good) is None
    for cut in (4, 36, 100, len(good) - 1):
        assert decode_calldata(ROUTER, good[:cut]) is None
    for _ in range(200):
        noise = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            noise[rng.randrange(4, len(noise))] = rng.randrange(256)
        decode_calldata(ROUTER, bytes(noise))  # may decode or not; must not raise
        decode_calldata(ROUTER, good[:4] + rng.randbytes(rng.randrange(0, 300)))
    # a one-token path and a malformed packed path
    assert (
        decode_calldata(ROUTER, calldata(ROUTER02, "swapExactTokensForTokens", 1, 1, [A], ME, 1))
        is None
    )
    bad_path = (v3_path(A, 3000, B) + b"\x00", ME, DEADLINE, 1, 1)
    assert decode_calldata(ROUTER, calldata(SWAP_ROUTER, "exactInput", bad_path)) is None


def test_transaction_shape() -> None:
    data = calldata(ROUTER02, "swapExactETHForTokens", 7, [WETH, A], ME, DEADLINE)
    tx = {
        "hash": "0x" + "AB" * 32,
        "from": ME.lower(),
        "nonce": "0x2a",
        "to": ROUTER.lower(),
        "value": hex(55),
        "input": "0x" + data.hex(),
    }
    pending = decode_transaction(tx)
    assert pending is not None
    assert (pending.tx_hash, pending.sender, pending.nonce, pending.to, pending.value) == (
        "0x" + "ab" * 32,
        ME,
        42,
        ROUTER,
        55,
    )
    assert pending.swaps[0].amount_in == 55
    assert (pending.max_fee_per_gas, pending.max_priority_fee_per_gas) == (0, 0)
    typed = decode_transaction({**tx, "maxFeePerGas": "0x64", "maxPriorityFeePerGas": "0x2"})
    legacy = decode_transaction({**tx, "gasPrice": "0x07"})
    assert typed is not None and legacy is not None
    assert (typed.max_fee_per_gas, typed.max_priority_fee_per_gas) == (100, 2)
    assert (legacy.max_fee_per_gas, legacy.max_priority_fee_per_gas) == (7, 7)
    assert decode_transaction({**tx, "to": None}) is None
    assert decode_transaction({k: v for k, v in tx.items() if k != "nonce"}) is None
    assert decode_transaction({**tx, "input": "0xzz"}) is None
    assert decode_transaction({**tx, "input": "0x"}) is None
