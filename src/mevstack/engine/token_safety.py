"""The market's unsafe-token detector, built from execution's simulated round trip.

For each token the registry meets, find a V2 pair of it against the chain's wrapped native token
on a configured V2 DEX (``factory.getPair``), and simulate buying a little of it and selling it
all back (``execution.roundtrip``, in the next block's context, nothing sent).  Any deviation
from the exact pair math (fee on transfer, rebasing, blocked transfers) is the reason the token
is kept out of every path.  A token with no such pair, or a node that cannot simulate, cannot be
judged this way: the token is admitted (with a log line), and the pipeline's simulation before
signing remains the last check.
"""

from __future__ import annotations

import logging

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.config import ChainConfig
from mevstack.execution.roundtrip import round_trip_token_check
from mevstack.execution.simulate import SimulationError, next_block_context
from mevstack.market.registry import UnsafeTokenDetector
from mevstack.strategy.mempool import selector

log = logging.getLogger(__name__)

PROBE_WEI = 10**16  # wrapped native spent in the simulated purchase: small against any real pool
_GET_PAIR = selector("getPair(address,address)")
_ZERO = "0x" + "00" * 20


def _word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


def round_trip_detector(rpc: JsonRpc, chain: ChainConfig) -> UnsafeTokenDetector:
    """An ``UnsafeTokenDetector`` for ``chain`` (see the module docstring)."""
    native = chain.wrapped_native
    v2 = [d for d in chain.dexes if d.kind == "uniswap_v2"]

    async def detect(token: str) -> str | None:
        if token.lower() == native.lower():
            return None
        for dex in v2:
            data = "0x" + _GET_PAIR.hex() + _word(token) + _word(native)
            try:
                answer = await rpc.request(
                    "eth_call", [{"to": dex.factory, "data": data}, "latest"]
                )
            except RpcError:
                continue
            if not isinstance(answer, str) or len(answer) < 66:
                continue
            pair = "0x" + answer[-40:]
            if pair == _ZERO:
                continue
            try:
                context = await next_block_context(rpc, block_time=chain.block_time)
                result = await round_trip_token_check(
                    rpc,
                    pair=pair,
                    token=token,
                    wrapped_native=native,
                    amount_in=PROBE_WEI,
                    context=context,
                    fee_bps=30 if dex.fee_bps is None else dex.fee_bps,
                )
            except (RpcError, SimulationError) as exc:
                # The node cannot simulate (no eth_simulateV1...): that says nothing about the
                # token, and refusing every token would stop the whole chain.
                log.warning("chain %s: token %s not checked: %s", chain.name, token, exc)
                return None
            if result.reason is not None:
                log.warning("chain %s: token %s is unsafe: %s", chain.name, token, result.reason)
            return result.reason
        return None

    return detect
