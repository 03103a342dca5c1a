"""The L1 data fee of our own transactions on OP-stack rollups: estimated before signing (the
gate) and exact after inclusion (the P&L).

After inclusion the receipt's ``l1Fee`` is used when the node reports it (op-geth, op-reth).
Plain anvil running an OP-stack devnet chain (the GasPriceOracle / L1Block predeploys installed)
does not, so the fee is asked from the GasPriceOracle's ``getL1Fee(bytes)`` with the unsigned
transaction, at the inclusion block: its L1-attributes values are the ones that block charged.
Chains without the predeploy pay no separate L1 fee here (Arbitrum folds its L1 cost into
``gasUsed``, so adding one would count it twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rlp
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from mevstack.chain.gas import OP_GAS_PRICE_ORACLE
from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError

OP_GET_L1_FEE = keccak(text="getL1Fee(bytes)")[:4]
MAX_NONCE = 2**64 - 1  # EIP-2681: the longest nonce encoding, for estimates made before one is set


def unsigned_typed_tx(raw: bytes) -> bytes:
    """The unsigned encoding of a signed typed (EIP-2718) transaction, as ``getL1Fee`` takes it:
    the type byte and the RLP payload without its last three fields (y parity, r, s)."""
    if not raw or raw[0] > 0x7F:
        raise MevstackError("expected a typed transaction (the executor's are EIP-1559)")
    fields = rlp.decode(raw[1:])
    if not isinstance(fields, list) or len(fields) < 4:
        raise MevstackError("malformed typed transaction")
    return raw[:1] + bytes(rlp.encode(fields[:-3]))


def unsigned_eip1559(tx: Mapping[str, Any]) -> bytes:
    """The unsigned EIP-1559 encoding of a transaction dict as the pipeline signs it."""
    data = tx.get("data") or b""
    payload = data if isinstance(data, bytes) else bytes.fromhex(str(data).removeprefix("0x"))
    fields = [
        int(tx["chainId"]),
        int(tx["nonce"]),
        int(tx["maxPriorityFeePerGas"]),
        int(tx["maxFeePerGas"]),
        int(tx["gas"]),
        bytes.fromhex(str(tx["to"]).removeprefix("0x")),
        int(tx.get("value", 0)),
        payload,
        [],
    ]
    return b"\x02" + bytes(rlp.encode(fields))


class L1Fees:
    """L1 data fees on one chain (see the module docstring)."""

    def __init__(self, rpc: JsonRpc) -> None:
        self.rpc = rpc
        self._op_stack: bool | None = None  # whether the GasPriceOracle predeploy is there

    async def op_stack(self) -> bool:
        if self._op_stack is None:
            code = await self.rpc.request("eth_getCode", [OP_GAS_PRICE_ORACLE, "latest"])
            self._op_stack = isinstance(code, str) and len(code) > 2
        return self._op_stack

    async def of_unsigned(self, unsigned: bytes, block: str = "latest") -> int:
        """``getL1Fee`` of the unsigned transaction at ``block``; 0 without the predeploy."""
        if not await self.op_stack():
            return 0
        data = OP_GET_L1_FEE + abi_encode(["bytes"], [unsigned])
        call = {"to": OP_GAS_PRICE_ORACLE, "data": "0x" + data.hex()}
        return int(str(await self.rpc.request("eth_call", [call, block])), 16)

    async def paid(self, receipt: Mapping[str, Any]) -> int:
        """The L1 data fee an included transaction paid on top of gas × price."""
        if receipt.get("l1Fee"):
            return int(str(receipt["l1Fee"]), 16)
        if not await self.op_stack():
            return 0
        tx_hash = str(receipt["transactionHash"])
        raw = await self.rpc.request("eth_getRawTransactionByHash", [tx_hash])
        if not isinstance(raw, str) or len(raw) <= 2:
            raise MevstackError(f"the node cannot return the raw transaction {tx_hash}")
        unsigned = unsigned_typed_tx(bytes.fromhex(raw[2:]))
        return await self.of_unsigned(unsigned, str(receipt["blockNumber"]))
