"""Encoding of execution paths and executor calldata: pure functions, no I/O.

A path is a list of ``Hop`` (one pool each).  On the wire it is packed, 43 bytes per hop, as the
contract reads it: ``pool (20) | token_out (20) | flags (1) | fee_bps (2)``; flags bit 0 marks a
Uniswap V3 pool, bit 1 ``zero_for_one``.  The input token of hop 0 is the start token, each later
hop's input is the previous hop's output; the encoder checks that chain so a malformed path is an
error here, not a revert on chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import is_hex_address, to_checksum_address
from eth_utils.crypto import keccak

from mevstack.errors import MevstackError

HOP_BYTES = 43
MAX_HOPS = 5

# Gas of an ``execute`` transaction beyond its hops: the 21k intrinsic cost, the calldata without
# the path, and the contract's own work (role and path checks, start-token balance reads, the
# profit check, the Executed log).  Each pool kind adds its hop's gas (``GAS_PER_HOP`` of
# market/pools/uniswap_v2.py, ``GAS_BASE``/``GAS_PER_TICK`` of uniswap_v3.py).  Least-squares fit
# over 2- and 3-hop V2 and V2+V3 paths on anvil 1.7.1 (tests/execution/test_gas_calibration.py):
# 36.3k, rounded.  Flash mode costs 3k-6k more than funded mode: within the estimate's margin.
EXECUTE_TX_BASE_GAS = 36_000

PoolKind = Literal["uniswap_v2", "uniswap_v3"]


class PathError(MevstackError):
    """A path that the executor contract cannot run."""


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


EXECUTE_SIG = "execute(address,uint256,uint256,uint256,bool,uint256,bytes)"
EXECUTE = selector(EXECUTE_SIG)
WITHDRAW_TOKEN = selector("withdraw_token(address,address,uint256)")
WITHDRAW_NATIVE = selector("withdraw_native(address,uint256)")
SET_OPERATOR = selector("set_operator(address)")
SET_OWNER = selector("set_owner(address)")
BALANCE_OF = selector("balanceOf(address)")
TRANSFER = selector("transfer(address,uint256)")


@dataclass(frozen=True, slots=True)
class Hop:
    """One swap of a path.  ``fee``: V2 fee in basis points (30), V3 fee in hundredths of a bip.

    ``amount_in`` / ``amount_out`` are what the strategy expects for this hop (exact pool math),
    kept for the record and for comparing with the simulation; the contract recomputes V2 outputs
    from on-chain reserves and V3 outputs come from the pool itself.
    """

    pool: str
    kind: PoolKind
    token_in: str
    token_out: str
    zero_for_one: bool
    fee: int
    amount_in: int | None = None
    amount_out: int | None = None


def _addr(value: str, what: str) -> bytes:
    if not is_hex_address(value):
        raise PathError(f"{what} is not an address: {value!r}")
    return bytes.fromhex(value[2:])


def encode_path(hops: list[Hop]) -> bytes:
    """The packed path the contract reads; checks hop count, token chaining and fees."""
    if not 1 <= len(hops) <= MAX_HOPS:
        raise PathError(f"a path has 1 to {MAX_HOPS} hops, got {len(hops)}")
    out = bytearray()
    for i, hop in enumerate(hops):
        if i > 0 and hop.token_in.lower() != hops[i - 1].token_out.lower():
            raise PathError(f"hop {i} starts in {hop.token_in}, hop {i - 1} ends in another token")
        if hop.token_in.lower() == hop.token_out.lower():
            raise PathError(f"hop {i} swaps a token for itself")
        if hop.kind == "uniswap_v2":
            if not 0 <= hop.fee < 10_000:
                raise PathError(f"hop {i}: V2 fee must be basis points below 10000, got {hop.fee}")
            flags, fee = 0, hop.fee
        elif hop.kind == "uniswap_v3":
            flags, fee = 1, 0
        else:
            raise PathError(f"hop {i}: unknown pool kind {hop.kind!r}")
        if hop.zero_for_one:
            flags |= 2
        out += _addr(hop.pool, f"hop {i} pool")
        out += _addr(hop.token_out, f"hop {i} token_out")
        out += bytes([flags]) + fee.to_bytes(2, "big")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class ExecuteArgs:
    """Arguments of ``execute``; ``coinbase_bps`` needs the wrapped native as start token."""

    start_token: str
    amount_in: int
    path: tuple[Hop, ...]
    min_profit: int = 0
    coinbase_bps: int = 0
    flash: bool = False
    deadline_block: int = 0


def encode_execute(args: ExecuteArgs) -> bytes:
    hops = list(args.path)
    if hops and hops[0].token_in.lower() != args.start_token.lower():
        raise PathError("the path's first hop does not start in the start token")
    if hops and hops[-1].token_out.lower() != args.start_token.lower():
        raise PathError("the path's last hop does not end in the start token")
    if args.flash and hops and hops[0].kind != "uniswap_v2":
        raise PathError("flash mode needs a Uniswap V2 first hop")
    if args.flash and any(h.pool.lower() == hops[0].pool.lower() for h in hops[1:]):
        # The pair is locked while it waits for its flash callback.
        raise PathError("flash mode cannot swap on the first pair again")
    if not 0 <= args.coinbase_bps <= 10_000:
        raise PathError(f"coinbase_bps must be 0..10000, got {args.coinbase_bps}")
    if not 0 < args.amount_in < 2**255:
        raise PathError(f"amount_in out of range: {args.amount_in}")
    body = abi_encode(
        ["address", "uint256", "uint256", "uint256", "bool", "uint256", "bytes"],
        [
            to_checksum_address(args.start_token),
            args.amount_in,
            args.min_profit,
            args.coinbase_bps,
            args.flash,
            args.deadline_block,
            encode_path(hops),
        ],
    )
    return EXECUTE + body


def decode_profit(return_data: bytes) -> int:
    """``execute`` returns the gross profit: the exact balance change of the start token."""
    (profit,) = abi_decode(["uint256"], return_data)
    return int(profit)


def encode_balance_of(holder: str) -> bytes:
    return BALANCE_OF + abi_encode(["address"], [to_checksum_address(holder)])


def encode_withdraw_token(token: str, to: str, amount: int) -> bytes:
    return WITHDRAW_TOKEN + abi_encode(
        ["address", "address", "uint256"],
        [to_checksum_address(token), to_checksum_address(to), amount],
    )


def encode_set_operator(operator: str) -> bytes:
    return SET_OPERATOR + abi_encode(["address"], [to_checksum_address(operator)])


def call_data(signature: str, *args: Any) -> bytes:
    """Calldata for ``signature`` (e.g. ``transfer(address,uint256)``) with flat argument types."""
    inner = signature[signature.index("(") + 1 : -1]
    types = inner.split(",") if inner else []
    return selector(signature) + abi_encode(types, list(args))
