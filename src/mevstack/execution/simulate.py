"""Simulating executor transactions exactly, in the next block's context, before signing.

Method: ``eth_simulateV1`` (anvil 1.7 and geth/reth support it).  One simulated block with the
predicted context (number + 1, EIP-1559 base fee from the parent, next timestamp, the parent's
fee recipient and gas limit) runs, in order: ``balanceOf`` reads of every watched
``(token, holder)``, the transactions (for a backrun ``[trigger, backrun]``), and the same reads
again.  That gives, from one round trip, each transaction's status, revert reason, exact gas used
(what its receipt will say, intrinsic gas included) and the exact balance changes, whatever the
token does on transfer.  The block context is always overridden explicitly: without overrides
anvil simulates in a block numbered 0 at timestamp 1.

A plain ``eth_call`` (with state and block overrides) is kept as :func:`call_execute` for
comparison: it returns the profit but not the gas used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address

from mevstack.chain.errors import ExecutionReverted, RpcError, decode_revert_reason
from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.execution.encode import ExecuteArgs, decode_profit, encode_balance_of, encode_execute

ELASTICITY = 2
BASE_FEE_DENOMINATOR = 8
# Sender of the simulated balanceOf reads: any address works, this one owns nothing.
READER = "0x000000000000000000000000000000000000dEaD"
# eth_simulateV1 with traceTransfers reports native value moves as ERC-20 style logs from here.
NATIVE_LOG_ADDRESS = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"


class SimulationError(MevstackError):
    """The node could not run the simulation (not: the simulated transaction reverted)."""


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559: the base fee of the block after one with these figures."""
    target = gas_limit // ELASTICITY
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        delta = max(base_fee * (gas_used - target) // target // BASE_FEE_DENOMINATOR, 1)
        return base_fee + delta
    return base_fee - base_fee * (target - gas_used) // target // BASE_FEE_DENOMINATOR


@dataclass(frozen=True, slots=True)
class BlockContext:
    """The block a transaction sent now is expected to land in."""

    number: int
    timestamp: int
    base_fee: int
    fee_recipient: str
    gas_limit: int
    prev_randao: str = "0x" + "00" * 32

    @property
    def parent_tag(self) -> str:
        """The block tag of the state this context's block is built on."""
        return hex(self.number - 1)

    def overrides(self) -> dict[str, str]:
        return {
            "number": hex(self.number),
            "time": hex(self.timestamp),
            "baseFeePerGas": hex(self.base_fee),
            "feeRecipient": self.fee_recipient,
            "gasLimit": hex(self.gas_limit),
            "prevRandao": self.prev_randao,
        }


def context_after(parent: dict[str, Any], *, block_time: float) -> BlockContext:
    """The next block's context from its parent block (as ``eth_getBlockByNumber`` returns it)."""
    gas_limit = int(parent["gasLimit"], 16)
    return BlockContext(
        number=int(parent["number"], 16) + 1,
        timestamp=int(parent["timestamp"], 16) + max(1, round(block_time)),
        base_fee=next_base_fee(
            int(parent.get("baseFeePerGas") or "0x0", 16), int(parent["gasUsed"], 16), gas_limit
        ),
        fee_recipient=to_checksum_address(parent["miner"]),
        gas_limit=gas_limit,
        prev_randao=str(parent.get("mixHash") or "0x" + "00" * 32),
    )


async def next_block_context(rpc: JsonRpc, *, block_time: float = 12.0) -> BlockContext:
    latest = await rpc.request("eth_getBlockByNumber", ["latest", False])
    if latest is None:
        raise SimulationError("the node has no latest block")
    return context_after(latest, block_time=block_time)


@dataclass(frozen=True, slots=True)
class TxRequest:
    """A transaction as it will be sent (and signed), minus nonce and signature."""

    sender: str
    to: str
    data: bytes
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    value: int = 0

    def as_call(self) -> dict[str, str]:
        return {
            "from": self.sender,
            "to": self.to,
            "data": "0x" + self.data.hex(),
            "gas": hex(self.gas),
            "maxFeePerGas": hex(self.max_fee_per_gas),
            "maxPriorityFeePerGas": hex(self.max_priority_fee_per_gas),
            "value": hex(self.value),
        }

    @staticmethod
    def from_rpc(tx: dict[str, Any]) -> TxRequest:
        """A seen transaction (``eth_getTransactionByHash`` shape), e.g. a backrun's trigger."""
        legacy_price = int(tx.get("gasPrice") or "0x0", 16)
        return TxRequest(
            sender=to_checksum_address(tx["from"]),
            to=to_checksum_address(tx["to"]),
            data=bytes.fromhex(str(tx.get("input") or tx.get("data") or "0x")[2:]),
            gas=int(tx["gas"], 16),
            max_fee_per_gas=int(tx.get("maxFeePerGas") or hex(legacy_price), 16),
            max_priority_fee_per_gas=int(tx.get("maxPriorityFeePerGas") or hex(legacy_price), 16),
            value=int(tx.get("value") or "0x0", 16),
        )


def build_execute_tx(
    *,
    executor: str,
    operator: str,
    args: ExecuteArgs,
    gas_limit: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
) -> TxRequest:
    """The exact transaction the execution pipeline sends for ``args``."""
    return TxRequest(
        sender=to_checksum_address(operator),
        to=to_checksum_address(executor),
        data=encode_execute(args),
        gas=gas_limit,
        max_fee_per_gas=max_fee_per_gas,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
    )


@dataclass(frozen=True, slots=True)
class CallResult:
    success: bool
    gas_used: int
    return_data: bytes
    revert_reason: str | None
    logs: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Simulation:
    """Outcome of the transactions simulated together in one next block."""

    context: BlockContext
    calls: tuple[CallResult, ...]  # one per transaction, in order
    balance_changes: dict[tuple[str, str], int] = field(default_factory=dict)
    balances_before: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def last(self) -> CallResult:
        return self.calls[-1]

    @property
    def success(self) -> bool:
        return all(c.success for c in self.calls)

    def native_transfers(self) -> list[tuple[str, str, int]]:
        """Native value moves (from, to, wei) of every transaction, from traced transfers."""
        moves: list[tuple[str, str, int]] = []
        for call in self.calls:
            for log in call.logs:
                topics = log.get("topics", [])
                if str(log.get("address", "")).lower() == NATIVE_LOG_ADDRESS and len(topics) == 3:
                    src = to_checksum_address("0x" + topics[1][-40:])
                    dst = to_checksum_address("0x" + topics[2][-40:])
                    moves.append((src, dst, int(log["data"], 16)))
        return moves


def _key(token: str, holder: str) -> tuple[str, str]:
    return to_checksum_address(token), to_checksum_address(holder)


def _call_result(raw: dict[str, Any]) -> CallResult:
    success = int(raw.get("status", "0x0"), 16) == 1
    data = bytes.fromhex(str(raw.get("returnData") or "0x")[2:])
    reason: str | None = None
    if not success:
        error = raw.get("error") or {}
        payload = error.get("data") if isinstance(error, dict) else None
        revert = data
        if isinstance(payload, str):
            # Undecodable revert data: fall back to the node's message below.
            with contextlib.suppress(ValueError):
                revert = bytes.fromhex(payload.removeprefix("0x"))
        reason = decode_revert_reason(revert)
        if reason is None and isinstance(error, dict):
            reason = str(error.get("message") or "") or None
        reason = reason or "reverted without a reason"
    return CallResult(
        success, int(raw.get("gasUsed", "0x0"), 16), data, reason, tuple(raw.get("logs") or [])
    )


async def simulate(
    rpc: JsonRpc,
    txs: Sequence[TxRequest],
    *,
    context: BlockContext,
    watch: Sequence[tuple[str, str]] = (),
    state_overrides: dict[str, Any] | None = None,
    on: str = "latest",
) -> Simulation:
    """Run ``txs`` in order in the block ``context`` on top of the state at block tag ``on``
    (the latest by default; a caller that read state for the transactions pins it to the
    block it read, ``context.parent_tag``, so that a new block in between cannot change it)."""
    if not txs:
        raise SimulationError("nothing to simulate")
    keys = [_key(t, h) for t, h in watch]
    reads = [
        {"from": READER, "to": token, "data": "0x" + encode_balance_of(holder).hex()}
        for token, holder in keys
    ]
    block: dict[str, Any] = {
        "blockOverrides": context.overrides(),
        "calls": [*reads, *(tx.as_call() for tx in txs), *reads],
    }
    if state_overrides:
        block["stateOverrides"] = state_overrides
    try:
        answer = await rpc.request(
            "eth_simulateV1",
            [{"blockStateCalls": [block], "validation": False, "traceTransfers": True}, on],
        )
    except RpcError as exc:
        raise SimulationError(f"eth_simulateV1 failed: {exc}") from exc
    try:
        raw_calls = answer[0]["calls"]
    except (TypeError, KeyError, IndexError):
        raise SimulationError("eth_simulateV1 answered without call results") from None
    if len(raw_calls) != 2 * len(reads) + len(txs):
        raise SimulationError("eth_simulateV1 answered with a different number of calls")
    results = [_call_result(c) for c in raw_calls]
    before: dict[tuple[str, str], int] = {}
    changes: dict[tuple[str, str], int] = {}
    for i, key in enumerate(keys):
        first, second = results[i], results[len(reads) + len(txs) + i]
        if not (first.success and second.success):
            raise SimulationError(f"balanceOf({key[1]}) on token {key[0]} reverted")
        start = int(abi_decode(["uint256"], first.return_data)[0])
        end = int(abi_decode(["uint256"], second.return_data)[0])
        before[key] = start
        changes[key] = end - start
    return Simulation(
        context=context,
        calls=tuple(results[len(reads) : len(reads) + len(txs)]),
        balance_changes=changes,
        balances_before=before,
    )


@dataclass(frozen=True, slots=True)
class ExecutionSimulation:
    """A simulated ``execute``: what it earns and what it costs (zeros when it reverts)."""

    success: bool
    revert_reason: str | None
    gas_used: int
    profit: int  # gross profit as the contract measured it (before any coinbase share)
    coinbase_paid: int  # the share of it paid to block.coinbase, in native wei
    balance_change: int  # exact change of the executor's start-token balance (what it keeps)
    simulation: Simulation


async def simulate_execute(
    rpc: JsonRpc,
    tx: TxRequest,
    args: ExecuteArgs,
    *,
    context: BlockContext,
    before: Sequence[TxRequest] = (),
) -> ExecutionSimulation:
    """Simulate an executor transaction, after ``before`` (e.g. a backrun's trigger)."""
    key = _key(args.start_token, tx.to)
    sim = await simulate(rpc, [*before, tx], context=context, watch=[key])
    last = sim.last
    change = sim.balance_changes[key]
    profit = decode_profit(last.return_data) if sim.success else 0
    paid = profit * args.coinbase_bps // 10_000
    if sim.success and change != profit - paid:
        raise SimulationError(
            f"the executor reports a profit of {profit} (share paid {paid}) "
            f"but its balance changed by {change}"
        )
    return ExecutionSimulation(
        success=sim.success,
        revert_reason=next((c.revert_reason for c in sim.calls if not c.success), None),
        gas_used=last.gas_used,
        profit=profit,
        coinbase_paid=paid,
        balance_change=change,
        simulation=sim,
    )


async def prepare_execute(
    rpc: JsonRpc,
    *,
    executor: str,
    operator: str,
    args: ExecuteArgs,
    priority_fee: int,
    block_time: float,
    before: Sequence[TxRequest] = (),
    gas_cap: int = 3_000_000,
    headroom_pct: int = 25,
) -> tuple[TxRequest, ExecutionSimulation]:
    """The transaction to sign for ``args`` and its simulation with that very gas limit.

    Rule: probe with ``gas_cap``, then set the limit to the gas used plus ``headroom_pct`` (so a
    slightly different state still fits) and simulate again with that limit, since a lower limit
    can change what runs (the 63/64 rule).  The fee cap is ``2 * predicted base fee + tip``.
    """
    context = await next_block_context(rpc, block_time=block_time)
    max_fee = 2 * context.base_fee + priority_fee

    def tx_with(limit: int) -> TxRequest:
        return build_execute_tx(
            executor=executor,
            operator=operator,
            args=args,
            gas_limit=limit,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority_fee,
        )

    probe = tx_with(gas_cap)
    first = await simulate_execute(rpc, probe, args, context=context, before=before)
    if not first.success:
        return probe, first
    tx = tx_with(min(gas_cap, first.gas_used * (100 + headroom_pct) // 100))
    return tx, await simulate_execute(rpc, tx, args, context=context, before=before)


async def call_execute(rpc: JsonRpc, tx: TxRequest, *, context: BlockContext) -> int:
    """The same transaction through plain ``eth_call`` with block overrides: the profit only.

    Raises ``ExecutionReverted`` (with the decoded reason) when it reverts.
    """
    call = tx.as_call()
    answer = await rpc.request("eth_call", [call, "latest", {}, context.overrides()])
    data = bytes.fromhex(str(answer)[2:])
    if len(data) != 32:
        raise ExecutionReverted(data, "unexpected return data from execute")
    return decode_profit(data)
