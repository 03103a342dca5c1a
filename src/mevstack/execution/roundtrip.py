"""The unsafe-token round trip: buy a token on a V2 pair and sell it back, in simulation.

A token is *safe* to route through when every amount moves exactly as the pair math says:
the buyer receives exactly the pair's output, the pair receives exactly what is sent back, and
the sale returns exactly the pair's output.  Fee-on-transfer, rebasing, blacklisting and
honeypot tokens break one of these and are reported with the step that broke.

Everything runs in ``eth_simulateV1`` in the next block's context from a synthetic trader whose
native balance is set by a state override (nothing is sent, nothing needs funding).  The base
token must be the chain's wrapped native (the trader wraps its overridden balance).  Two
simulations are needed because the sale's calldata depends on what the purchase delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address

from mevstack.chain.rpc import JsonRpc
from mevstack.execution.encode import call_data as encode_call
from mevstack.execution.simulate import (
    BlockContext,
    CallResult,
    SimulationError,
    TxRequest,
    simulate,
)

# A keyless address used only inside simulations.
TRADER = "0x00000000000000000000000000000000C0FFEE01"
GAS = 1_000_000


def v2_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    """UniswapV2Library.getAmountOut with a fork's fee in basis points (30 = 0.3 %)."""
    with_fee = amount_in * (10_000 - fee_bps)
    return with_fee * reserve_out // (reserve_in * 10_000 + with_fee)


@dataclass(frozen=True, slots=True)
class RoundTrip:
    token: str
    amount_in: int  # base token sold for the token
    bought_expected: int
    bought_received: int
    sold_arrived: int  # what reached the pair when all of bought_received was sent back
    base_expected: int
    base_received: int
    reason: str | None  # None: safe

    @property
    def safe(self) -> bool:
        return self.reason is None


def _tx(to: str, data: bytes, value: int = 0) -> TxRequest:
    return TxRequest(TRADER, to, data, GAS, 0, 0, value)


def _uint(call: CallResult) -> int:
    return int(abi_decode(["uint256"], call.return_data)[0])


async def round_trip_token_check(
    rpc: JsonRpc,
    *,
    pair: str,
    token: str,
    wrapped_native: str,
    amount_in: int,
    context: BlockContext,
    fee_bps: int = 30,
) -> RoundTrip:
    """Buy ``token`` with ``amount_in`` wrapped native on V2 ``pair`` and sell it all back."""
    pair, token, base = (to_checksum_address(a) for a in (pair, token, wrapped_native))
    # Reserves and simulations all at the context's parent block: read at "latest" instead, a
    # block landing in between (a trade on this pair) made the exact buy revert with K and a
    # sound token look unsafe.
    at = context.parent_tag
    raw0 = await rpc.request("eth_call", [{"to": pair, "data": "0x0dfe1681"}, at])
    token0 = to_checksum_address("0x" + str(raw0)[-40:])
    reserves_raw = await rpc.request("eth_call", [{"to": pair, "data": "0x0902f1ac"}, at])
    r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"], bytes.fromhex(reserves_raw[2:]))
    base_is_0 = token0 == base
    if not base_is_0 and token0 != token:
        raise SimulationError(f"pair {pair} does not trade {token}")
    r_base, r_token = (int(r0), int(r1)) if base_is_0 else (int(r1), int(r0))
    bought = v2_amount_out(amount_in, r_base, r_token, fee_bps)
    buy_out = (0, bought) if base_is_0 else (bought, 0)
    overrides: dict[str, Any] = {TRADER: {"balance": hex(amount_in + 10**18)}}
    buy = [
        _tx(base, encode_call("deposit()"), amount_in),
        _tx(base, encode_call("transfer(address,uint256)", pair, amount_in)),
        _tx(pair, encode_call("swap(uint256,uint256,address,bytes)", *buy_out, TRADER, b"")),
        _tx(token, encode_call("balanceOf(address)", TRADER)),
    ]
    first = await simulate(rpc, buy, context=context, state_overrides=overrides, on=at)
    for step, call in zip(
        ("wrap", "pay the pair", "buy", "read balance"), first.calls, strict=True
    ):
        if not call.success:
            return RoundTrip(
                token, amount_in, bought, 0, 0, 0, 0, f"{step} reverted: {call.revert_reason}"
            )
    received = _uint(first.calls[3])
    if received != bought:
        return RoundTrip(
            token,
            amount_in,
            bought,
            received,
            0,
            0,
            0,
            f"buying delivered {received} instead of {bought}",
        )
    # After the buy the pair holds exactly these reserves (its balances, synced by swap).
    rb, rt = r_base + amount_in, r_token - bought
    base_out = v2_amount_out(received, rt, rb, fee_bps)
    sell_out = (base_out, 0) if base_is_0 else (0, base_out)
    sell = [
        *buy[:3],
        _tx(token, encode_call("transfer(address,uint256)", pair, received)),
        _tx(token, encode_call("balanceOf(address)", pair)),
        _tx(pair, encode_call("swap(uint256,uint256,address,bytes)", *sell_out, TRADER, b"")),
        _tx(base, encode_call("balanceOf(address)", TRADER)),
    ]
    second = await simulate(rpc, sell, context=context, state_overrides=overrides, on=at)
    calls = second.calls
    if not calls[3].success:
        reason = f"selling: transfer to the pair reverted: {calls[3].revert_reason}"
        return RoundTrip(token, amount_in, bought, received, 0, base_out, 0, reason)
    arrived = _uint(calls[4]) - rt
    if arrived != received:
        reason = f"selling: the pair received {arrived} of {received} sent"
        return RoundTrip(token, amount_in, bought, received, arrived, base_out, 0, reason)
    if not calls[5].success:
        reason = f"selling reverted: {calls[5].revert_reason}"
        return RoundTrip(token, amount_in, bought, received, arrived, base_out, 0, reason)
    got = _uint(calls[6])
    mismatch = None if got == base_out else f"selling returned {got} instead of {base_out}"
    return RoundTrip(token, amount_in, bought, received, arrived, base_out, got, mismatch)
