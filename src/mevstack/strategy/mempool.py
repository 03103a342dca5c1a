"""Decoding pending transactions into swap intents: pure, no I/O, never raises on bad input.

Understood calls (selectors computed from the function signatures of the shipped ABIs; the test
suite checks each signature against the npm artifacts):

* UniswapV2Router02: the six ``swap*`` functions and the three ``*SupportingFeeOnTransferTokens``
  variants;
* Uniswap V3 ``SwapRouter``: ``exactInputSingle``, ``exactInput`` (packed path),
  ``exactOutputSingle``, ``exactOutput`` (packed path, output token first) and ``multicall``
  wrapping any of them (other multicall items such as ``refundETH`` carry no swap and are skipped);
* direct pool calls: a V2 pair's ``swap`` and a V3 pool's ``swap``.

Decoding looks at the calldata only: whether ``to`` really is a router or pool we track is decided
when the intent is applied to pool state (``strategy.backrun``).  Anything else — unknown
selector, malformed arguments, a contract creation — decodes to ``None``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

Venue = Literal["uniswap_v2_router", "uniswap_v3_router", "uniswap_v2_pair", "uniswap_v3_pool"]

_V3_SINGLE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
_V3_MULTI = "(bytes,address,uint256,uint256,uint256)"

# Router02 swaps: signature -> (exact input?, ETH in?, ETH out?, fee-on-transfer variant?)
V2_ROUTER_SWAPS: dict[str, tuple[bool, bool, bool, bool]] = {
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)": (
        True, False, False, False),
    "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)": (
        False, False, False, False),
    "swapExactETHForTokens(uint256,address[],address,uint256)": (True, True, False, False),
    "swapTokensForExactETH(uint256,uint256,address[],address,uint256)": (
        False, False, True, False),
    "swapExactTokensForETH(uint256,uint256,address[],address,uint256)": (
        True, False, True, False),
    "swapETHForExactTokens(uint256,address[],address,uint256)": (False, True, False, False),
    "swapExactTokensForTokensSupportingFeeOnTransferTokens"
    "(uint256,uint256,address[],address,uint256)": (True, False, False, True),
    "swapExactETHForTokensSupportingFeeOnTransferTokens(uint256,address[],address,uint256)": (
        True, True, False, True),
    "swapExactTokensForETHSupportingFeeOnTransferTokens"
    "(uint256,uint256,address[],address,uint256)": (True, False, True, True),
}  # fmt: skip
V3_ROUTER_SWAPS: tuple[str, ...] = (
    f"exactInputSingle({_V3_SINGLE})",
    f"exactInput({_V3_MULTI})",
    f"exactOutputSingle({_V3_SINGLE})",
    f"exactOutput({_V3_MULTI})",
)
V3_MULTICALL = "multicall(bytes[])"
V2_PAIR_SWAP = "swap(uint256,uint256,address,bytes)"
V3_POOL_SWAP = "swap(address,bool,int256,uint160,bytes)"

_ADDRESS_BYTES = 20
_FEE_BYTES = 3


def selector(signature: str) -> bytes:
    """The 4-byte function selector: the first bytes of keccak256 of the signature."""
    return keccak(text=signature)[:4]


def _arg_types(signature: str) -> list[str]:
    """Top-level argument types of a signature (tuples kept whole)."""
    inner = signature[signature.index("(") + 1 : -1]
    types: list[str] = []
    depth = 0
    current = ""
    for char in inner:
        if char == "," and depth == 0:
            types.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current:
        types.append(current)
    return types


@dataclass(frozen=True, slots=True)
class SwapHop:
    """One pool of the path, in trading order (``token_in`` is sold for ``token_out``).

    Router paths name tokens (and, for V3, the fee tier) and leave the pool to the router's
    factory; direct pool calls name the pool and the direction, and leave the tokens to the pool.
    """

    token_in: str | None
    token_out: str | None
    fee: int | None = None
    pool: str | None = None
    zero_for_one: bool | None = None


@dataclass(frozen=True, slots=True)
class SwapIntent:
    """One swap a pending transaction asks for.

    ``exact_in``: ``amount_in`` is the exact input and ``amount_out`` the minimum output the caller
    accepts (``amountOutMin``); otherwise ``amount_out`` is the exact output and ``amount_in`` the
    maximum input (``amountInMax``, or ``msg.value`` when paying in ETH).  ``deadline`` is ``None``
    where the call has none (direct pool calls).  ``sqrt_price_limit_x96`` is 0 when unset.
    """

    venue: Venue
    method: str
    target: str
    path: tuple[SwapHop, ...]
    exact_in: bool
    amount_in: int
    amount_out: int
    recipient: str
    deadline: int | None
    value: int = 0
    native_in: bool = False
    native_out: bool = False
    fee_on_transfer: bool = False
    sqrt_price_limit_x96: int = 0
    callback_data: bytes = b""

    @property
    def tokens(self) -> tuple[str | None, ...]:
        """The tokens along the path, first input to last output (``None`` where unnamed)."""
        if not self.path:
            return ()
        return (self.path[0].token_in, *(hop.token_out for hop in self.path))


@dataclass(frozen=True, slots=True)
class PendingSwap:
    """A pending transaction that swaps: who sent it (sender + nonce identify it across
    replacements), its hash, and the swaps its calldata asks for, in execution order.  Its fees
    (a legacy ``gasPrice`` fills both) tell a backrun what it must not outbid to land after it."""

    tx_hash: str
    sender: str
    nonce: int
    to: str
    value: int
    swaps: tuple[SwapIntent, ...]
    max_fee_per_gas: int = 0
    max_priority_fee_per_gas: int = 0


@functools.lru_cache(maxsize=8192)
def _checksum(address: str) -> str:
    # Cached: a mempool repeats the same routers and tokens, and checksumming costs a keccak.
    return str(to_checksum_address(address))


def _address(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = "0x" + bytes(value).hex()
    if not isinstance(value, str):
        raise TypeError("not an address")
    return _checksum(value)


def decode_v3_path(path: bytes) -> list[tuple[str, int, str]] | None:
    """A packed V3 path ``token (20) | fee (3) | token (20) | ...`` as (token, fee, token) hops."""
    step = _ADDRESS_BYTES + _FEE_BYTES
    if len(path) < _ADDRESS_BYTES + step or (len(path) - _ADDRESS_BYTES) % step:
        return None
    hops: list[tuple[str, int, str]] = []
    for start in range(0, len(path) - _ADDRESS_BYTES, step):
        token_a = _address(path[start : start + _ADDRESS_BYTES])
        fee = int.from_bytes(path[start + _ADDRESS_BYTES : start + step], "big")
        token_b = _address(path[start + step : start + step + _ADDRESS_BYTES])
        hops.append((token_a, fee, token_b))
    return hops


def _token_hops(path: list[str]) -> tuple[SwapHop, ...] | None:
    if len(path) < 2:
        return None
    tokens = [_address(t) for t in path]
    return tuple(SwapHop(a, b) for a, b in itertools.pairwise(tokens))


def _v2_router(signature: str, args: tuple[Any, ...], target: str, value: int) -> SwapIntent | None:
    exact_in, eth_in, eth_out, fee_on_transfer = V2_ROUTER_SWAPS[signature]
    if eth_in:
        # (amountOutMin | amountOut, path, to, deadline): the input (or its cap) is msg.value
        amount_out, path, recipient, deadline = args
        amount_in = value
    else:
        first, second, path, recipient, deadline = args
        amount_in, amount_out = (first, second) if exact_in else (second, first)
    hops = _token_hops(list(path))
    if hops is None:
        return None
    return SwapIntent(
        venue="uniswap_v2_router",
        method=signature[: signature.index("(")],
        target=target,
        path=hops,
        exact_in=exact_in,
        amount_in=amount_in,
        amount_out=amount_out,
        recipient=_address(recipient),
        deadline=deadline,
        value=value,
        native_in=eth_in,
        native_out=eth_out,
        fee_on_transfer=fee_on_transfer,
    )


def _v3_router(signature: str, args: tuple[Any, ...], target: str, value: int) -> SwapIntent | None:
    method = signature[: signature.index("(")]
    (params,) = args
    if method in ("exactInputSingle", "exactOutputSingle"):
        token_in, token_out, fee, recipient, deadline, amount, limit, price_limit = params
        hops: tuple[SwapHop, ...] = (SwapHop(_address(token_in), _address(token_out), fee),)
    else:
        path, recipient, deadline, amount, limit = params
        price_limit = 0
        decoded = decode_v3_path(bytes(path))
        if decoded is None:
            return None
        if method == "exactOutput":
            # exactOutput's path runs from the output token back to the input token.
            hops = tuple(SwapHop(b, a, fee) for a, fee, b in reversed(decoded))
        else:
            hops = tuple(SwapHop(a, b, fee) for a, fee, b in decoded)
    exact_in = method.startswith("exactInput")
    return SwapIntent(
        venue="uniswap_v3_router",
        method=method,
        target=target,
        path=hops,
        exact_in=exact_in,
        amount_in=amount if exact_in else limit,
        amount_out=limit if exact_in else amount,
        recipient=_address(recipient),
        deadline=deadline,
        value=value,
        sqrt_price_limit_x96=price_limit,
    )


def _v2_pair(args: tuple[Any, ...], target: str, value: int) -> SwapIntent | None:
    amount0_out, amount1_out, recipient, data = args
    # Exactly one side out is a plain swap; both (or neither) is not something we can apply.
    if (amount0_out > 0) == (amount1_out > 0):
        return None
    zero_for_one = amount1_out > 0
    return SwapIntent(
        venue="uniswap_v2_pair",
        method="swap",
        target=target,
        path=(SwapHop(None, None, pool=target, zero_for_one=zero_for_one),),
        exact_in=False,
        amount_in=0,  # whatever was sent to the pair beforehand: known only from its balances
        amount_out=amount1_out if zero_for_one else amount0_out,
        recipient=_address(recipient),
        deadline=None,
        value=value,
        callback_data=bytes(data),
    )


def _v3_pool(args: tuple[Any, ...], target: str, value: int) -> SwapIntent | None:
    recipient, zero_for_one, amount_specified, price_limit, data = args
    if amount_specified == 0:
        return None
    exact_in = amount_specified > 0
    return SwapIntent(
        venue="uniswap_v3_pool",
        method="swap",
        target=target,
        path=(SwapHop(None, None, pool=target, zero_for_one=bool(zero_for_one)),),
        exact_in=exact_in,
        amount_in=amount_specified if exact_in else 0,
        amount_out=0 if exact_in else -amount_specified,
        recipient=_address(recipient),
        deadline=None,
        value=value,
        sqrt_price_limit_x96=price_limit,
        callback_data=bytes(data),
    )


_Decoder = Callable[[str, tuple[Any, ...], str, int], SwapIntent | None]


def _table() -> dict[bytes, tuple[str, list[str], _Decoder]]:
    table: dict[bytes, tuple[str, list[str], _Decoder]] = {}
    for signature in V2_ROUTER_SWAPS:
        table[selector(signature)] = (signature, _arg_types(signature), _v2_router)
    for signature in V3_ROUTER_SWAPS:
        table[selector(signature)] = (signature, _arg_types(signature), _v3_router)
    table[selector(V2_PAIR_SWAP)] = (
        V2_PAIR_SWAP,
        _arg_types(V2_PAIR_SWAP),
        lambda _s, a, t, v: _v2_pair(a, t, v),
    )
    table[selector(V3_POOL_SWAP)] = (
        V3_POOL_SWAP,
        _arg_types(V3_POOL_SWAP),
        lambda _s, a, t, v: _v3_pool(a, t, v),
    )
    return table


_DECODERS = _table()
_MULTICALL = selector(V3_MULTICALL)
_V3_ROUTER_SELECTORS = frozenset(selector(s) for s in V3_ROUTER_SWAPS)


def _decode_one(data: bytes, target: str, value: int) -> SwapIntent | None:
    entry = _DECODERS.get(data[:4])
    if entry is None:
        return None
    signature, types, decoder = entry
    args = tuple(abi_decode(types, data[4:]))
    return decoder(signature, args, target, value)


def decode_calldata(to: str, data: bytes, value: int = 0) -> tuple[SwapIntent, ...] | None:
    """The swaps a call to ``to`` with ``data`` (and ``value`` wei) asks for, in execution order;
    ``None`` when the calldata is not a swap we understand."""
    head = data[:4]
    if head != _MULTICALL and head not in _DECODERS:
        return None  # most of a mempool: decided on the selector alone
    try:
        target = _address(to)
        if data[:4] == _MULTICALL:
            (items,) = abi_decode(["bytes[]"], data[4:])
            swaps: list[SwapIntent] = []
            for item in items:
                item_bytes = bytes(item)
                if item_bytes[:4] not in _V3_ROUTER_SELECTORS:
                    continue  # refundETH, unwrapWETH9, sweepToken, ...: no pool is touched
                intent = _decode_one(item_bytes, target, value)
                if intent is None:
                    return None
                swaps.append(intent)
            return tuple(swaps) or None
        intent = _decode_one(data, target, value)
    except Exception:  # any malformed calldata is simply "not a swap"
        return None
    return None if intent is None else (intent,)


def _hex_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value), 16)


def decode_transaction(tx: Mapping[str, Any]) -> PendingSwap | None:
    """A pending transaction (``eth_getTransactionByHash`` / ``txpool_content`` shape) as the swaps
    it asks for; ``None`` for anything that is not a swap we understand."""
    try:
        to = tx.get("to")
        if not to:
            return None
        raw = str(tx.get("input") or tx.get("data") or "0x")
        data = bytes.fromhex(raw.removeprefix("0x"))
        value = _hex_int(tx.get("value") or 0)
        swaps = decode_calldata(str(to), data, value)
        if swaps is None:
            return None
        legacy = tx.get("gasPrice") or 0
        return PendingSwap(
            tx_hash=str(tx["hash"]).lower(),
            sender=_address(tx["from"]),
            nonce=_hex_int(tx["nonce"]),
            to=_address(to),
            value=value,
            swaps=swaps,
            max_fee_per_gas=_hex_int(tx.get("maxFeePerGas") or legacy),
            max_priority_fee_per_gas=_hex_int(tx.get("maxPriorityFeePerGas") or legacy),
        )
    except (KeyError, TypeError, ValueError):
        return None
