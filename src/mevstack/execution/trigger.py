"""A backrun's trigger: the pending transaction it must land right after, read from the node.

:func:`load_trigger` fetches the trigger by hash (``eth_getTransactionByHash`` for its fields,
``eth_getRawTransactionByHash`` for the exact signed bytes that go first in the bundle) and
refuses, with the reason, a trigger the node no longer holds as pending: dropped or replaced
(same nonce, other hash: the hash is unknown) or already mined (nothing left to backrun).

Pricing rule (:func:`backrun_fees`), for every route: the backrun's tip and fee cap are each at
most the trigger's.  Its effective tip ``min(tip, max_fee - base_fee)`` is then never above the
trigger's at any base fee, and whenever the backrun can pay the base fee the trigger can too, so
a block ordered by effective tip never puts the backrun in front of its trigger.  On a public
route the trigger must also still be pending at our node right before the send (the pipeline
re-checks), so the backrun never reaches the mempool ahead of it.

Ahead transactions (:func:`load_ahead`): the other pending transactions the strategy priced the
backrun behind: those a node orders before the trigger, and (off the bundle route) those it puts
between the trigger and a backrun with the fees of :func:`planned_backrun_fees`, which ranks no
higher than the trigger and is seen after everything already pending.  Each is read again by
hash: one still pending is simulated in its place; one mined since is already in the state the
simulation starts from; one the node no longer knows was dropped or replaced by a transaction we
cannot see, so the backrun's price is unknown and it is refused (:class:`AheadUnknown`).  Each
pending one also carries its exact signed bytes (``eth_getRawTransactionByHash``, read in the same
batch): a bundle sends those ahead of the trigger in front of it, so a builder runs the backrun
on the state it was priced on rather than on the trigger alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevstack.chain.errors import RpcError, RpcResponseError
from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.execution.simulate import TxRequest


class TriggerGone(MevstackError):
    """The trigger is no longer pending (dropped, replaced or mined): the backrun is moot."""


class AheadUnknown(TriggerGone):
    """A transaction the backrun was priced behind was dropped or replaced: no price holds."""


@dataclass(frozen=True, slots=True)
class Trigger:
    hash: str
    raw: str
    request: TxRequest  # as the simulator runs it, before the backrun


def _int(tx: Mapping[str, Any], key: str) -> int:
    value = tx.get(key)
    return int(str(value), 16) if value else 0


def trigger_request(tx: Mapping[str, Any]) -> TxRequest:
    """The simulator's view of a transaction as ``eth_getTransactionByHash`` returns it."""
    if tx.get("maxFeePerGas"):
        max_fee, tip = _int(tx, "maxFeePerGas"), _int(tx, "maxPriorityFeePerGas")
    else:
        # legacy and access-list transactions pay their gas price as both cap and tip
        max_fee = tip = _int(tx, "gasPrice")
    to = tx.get("to")
    if not to:
        raise TriggerGone("the trigger creates a contract: it cannot be backrun")
    data = str(tx.get("input") or tx.get("data") or "0x")
    return TxRequest(
        sender=to_checksum_address(str(tx["from"])),
        to=to_checksum_address(str(to)),
        data=bytes.fromhex(data.removeprefix("0x")),
        gas=_int(tx, "gas"),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
        value=_int(tx, "value"),
    )


async def pending_trigger(rpc: JsonRpc, tx_hash: str) -> Mapping[str, Any]:
    """The trigger's fields if the node still holds it as pending, else :class:`TriggerGone`."""
    tx = await rpc.request("eth_getTransactionByHash", [tx_hash])
    if not isinstance(tx, Mapping):
        raise TriggerGone(f"trigger {tx_hash} is no longer known to the node (dropped or replaced)")
    if tx.get("blockNumber"):
        raise TriggerGone(
            f"trigger {tx_hash} is already mined in block {int(str(tx['blockNumber']), 16)}"
        )
    return tx


def _checked_raw(tx_hash: str, raw: object) -> str | None:
    """``raw`` as the node returned it for ``tx_hash``; None if the node no longer has it."""
    if not isinstance(raw, str) or raw in ("", "0x"):
        return None
    if "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex() != tx_hash.lower():
        raise MevstackError(f"the node's raw transaction for {tx_hash} does not hash to it")
    return raw


async def load_trigger(rpc: JsonRpc, tx_hash: str) -> Trigger:
    tx = await pending_trigger(rpc, tx_hash)
    try:
        raw = _checked_raw(tx_hash, await rpc.request("eth_getRawTransactionByHash", [tx_hash]))
    except RpcResponseError as exc:
        raise MevstackError(
            f"the node cannot return the trigger's raw transaction: {exc}"
        ) from None
    if raw is None:
        raise TriggerGone(f"trigger {tx_hash} is no longer known to the node (dropped or replaced)")
    return Trigger(hash=tx_hash.lower(), raw=raw, request=trigger_request(tx))


def backrun_fees(trigger: TxRequest, *, max_fee: int, priority_fee: int) -> tuple[int, int]:
    """(fee cap, tip) of a backrun: each at most the trigger's (see the module docstring)."""
    return min(max_fee, trigger.max_fee_per_gas), min(
        priority_fee, trigger.max_priority_fee_per_gas
    )


def planned_backrun_fees(
    trigger_max_fee: int, trigger_tip: int, *, base_fee: int, tip: int
) -> tuple[int, int]:
    """(fee cap, tip) the pipeline gives a backrun of a trigger with these fees when the next
    block's base fee is ``base_fee`` and the tip it offers is ``tip``: the tip at most the
    trigger's, the cap ``2 × base fee + tip`` (as ``prepare_execute`` sets it) at most the
    trigger's.  The strategy ranks the backrun with them among the pending transactions."""
    priority = min(tip, trigger_tip)
    return min(2 * base_fee + priority, trigger_max_fee), priority


@dataclass(frozen=True, slots=True)
class Ahead:
    hash: str
    request: TxRequest  # as the simulator runs it, in front of the trigger
    raw: str  # the exact signed bytes, sent in front of the trigger in a bundle


async def load_ahead(rpc: JsonRpc, tx_hashes: Sequence[str]) -> tuple[Ahead, ...]:
    """The still-pending ones of ``tx_hashes`` (in their order), read in one batch; mined ones
    are left out (the latest state holds them); an unknown one is :class:`AheadUnknown`.
    Fields and raw bytes of each come from one batch, so both describe the same moment."""
    if not tx_hashes:
        return ()
    answers = await rpc.batch(
        [
            call
            for h in tx_hashes
            for call in (("eth_getTransactionByHash", [h]), ("eth_getRawTransactionByHash", [h]))
        ]
    )
    out: list[Ahead] = []
    for i, tx_hash in enumerate(tx_hashes):
        tx, raw = answers[2 * i], answers[2 * i + 1]
        if isinstance(tx, RpcError):
            raise MevstackError(f"ahead transaction {tx_hash}: the node did not answer: {tx}")
        if not isinstance(tx, Mapping):
            raise AheadUnknown(
                f"ahead transaction {tx_hash} is no longer known to the node (dropped or "
                "replaced): the backrun's price is unknown"
            )
        if tx.get("blockNumber"):
            continue
        try:
            request = trigger_request(tx)
        except TriggerGone as exc:  # a contract creation: not a swap we priced
            raise AheadUnknown(f"ahead transaction {tx_hash}: {exc}") from None
        if isinstance(raw, RpcError):
            raise MevstackError(
                f"the node cannot return ahead transaction {tx_hash}'s raw bytes: {raw}"
            )
        checked = _checked_raw(tx_hash, raw)
        if checked is None:
            raise AheadUnknown(
                f"ahead transaction {tx_hash} is no longer known to the node (dropped or "
                "replaced): the backrun's price is unknown"
            )
        out.append(Ahead(hash=tx_hash.lower(), request=request, raw=checked))
    return tuple(out)
