"""Reading the executor contract's inventory into the trading state.

The operator's native balance (its gas money) is read by
:func:`mevstack.execution.tracker.refresh_native_balance`; this reads the other balance a chain
trades from: the executor's holding of the wrapped native token, the inventory that paths which
cannot borrow their input spend.  Wrapped native is 1:1 native, so the figure is native wei.
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode

from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.execution.encode import encode_balance_of
from mevstack.execution.pipeline import ChainContext
from mevstack.execution.trading_state import TradingState


async def refresh_executor_balance(rpc: JsonRpc, state: TradingState, chain: ChainContext) -> int:
    """Read the executor's wrapped-native balance and hand it to the trading state."""
    call = {"to": chain.wrapped_native, "data": "0x" + encode_balance_of(chain.executor).hex()}
    raw = await rpc.request("eth_call", [call, "latest"])
    try:
        (value,) = abi_decode(["uint256"], bytes.fromhex(str(raw).removeprefix("0x")))
    except Exception as exc:  # eth_abi raises several unrelated types for a bad answer
        raise MevstackError(
            f"chain {chain.name}: balanceOf answer is not a uint256: {str(raw)[:80]}"
        ) from exc
    balance = int(value)
    state.set_executor_balance(chain.name, balance)
    return balance
