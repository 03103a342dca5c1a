"""Opportunity → trade: risk gate, simulation gate, write-ahead row, sign, send.

Order of one execution (:meth:`Pipeline.execute`):

1. the trading state's risk check (kill switch, mode, pause, blocklist, limits);
2. the executor's simulation in the next block's context (``prepare_execute``; for a backrun
   ``[ahead..., trigger, between..., backrun]``: the pending transactions it was priced behind,
   around its trigger, see :mod:`mevstack.execution.trigger`); refused unless it
   succeeds with ``net = balance change − gas_limit × max_fee − 2 × L1 fee ≥ min_net_profit_wei``
   (the gas is priced at the worst case the transaction can pay; the L1 data fee, OP stack only,
   from the GasPriceOracle).  The contract's ``min_profit`` is then set
   to exactly that worst-case gas plus the minimum, so on chain it reverts rather than lose, and
   the final transaction is simulated once more;
3. ``paper`` mode stops here and records what would have happened (status ``cancelled``);
4. a backrun's trigger must still be pending (see :mod:`mevstack.execution.trigger` for why
   and how a backrun is priced never to land in front of it), and its ahead transactions are
   read again: a dropped one refuses it, a mined one is left out, the still-pending ones go in
   front of the trigger in a bundle (``[ahead..., trigger, backrun]``, the simulated order);
   and the strategy's latest pricing must not put a transaction in front of the backrun that
   the simulation did not run (``Plan.repriced``);
5. the trade row is written (``pending``, with the lease's fencing epoch) **before** signing;
6. the submitter reserves the nonce, signs behind the kill switch and the lease fence, records
   the hash on the row, then sends; the row becomes ``submitted`` or ``failed``.

Every refusal is returned with its reason, audited, and marks the opportunity ``rejected`` when
the store knows it.  An executed opportunity follows its trade: ``submitted`` once sent, then the
trade's outcome (``failed`` here, ``included`` / ``failed`` from the tracker), each change
published again as a ``mev.opportunity`` event (:func:`mark_opportunity`).

:meth:`Pipeline.replacement` re-prices a sent trade that has not landed: the same call at fees
bumped as a replacement must be, its on-chain minimum raised to the new worst-case gas, and
simulated again as still profitable (or ``None``: the caller cancels the nonce instead).

Net profit in native wei needs the cycle to start in the wrapped native token (other start
tokens are refused until a valuation is wired in).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.execution.encode import ExecuteArgs, encode_execute
from mevstack.execution.l1fee import MAX_NONCE, L1Fees, unsigned_eip1559
from mevstack.execution.lease import ExecutionLease
from mevstack.execution.nonces import replacement_fees
from mevstack.execution.risk import Candidate
from mevstack.execution.routes import RouteKind, SignedTx, Submitter
from mevstack.execution.simulate import (
    ExecutionSimulation,
    TxRequest,
    next_block_context,
    prepare_execute,
    simulate_execute,
)
from mevstack.execution.trading_state import TradingState
from mevstack.execution.trigger import (
    Ahead,
    Trigger,
    TriggerGone,
    backrun_fees,
    load_ahead,
    pending_trigger,
)
from mevstack.store import NotFound, Store, Trade

log = logging.getLogger(__name__)

L1_FEE_HEADROOM = 2
Publish = Callable[[str, str | None, Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ChainContext:
    """What the pipeline needs to know about its chain."""

    name: str
    chain_id: int
    block_time: float
    wrapped_native: str
    executor: str
    route: RouteKind
    min_net_profit_wei: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """An opportunity made executable: the executor call and what the gate checks."""

    opportunity_id: str | None
    args: ExecuteArgs
    expires_at_block: int
    priority_fee: int
    trigger: TxRequest | None = None  # a backrun's trigger, simulated first
    trigger_raw: str | None = None  # and sent first in the bundle
    trigger_hash: str | None = None  # re-checked as still pending right before the send
    # pending transactions a node orders before the trigger, which the backrun was priced
    # behind: simulated in front of it (hashes and requests, in block order)
    ahead: tuple[TxRequest, ...] = ()
    ahead_hashes: tuple[str, ...] = ()
    # those the node puts between the trigger and the backrun (never on a bundle route, which
    # lands the backrun right behind its trigger): simulated after the trigger
    between: tuple[TxRequest, ...] = ()
    between_hashes: tuple[str, ...] = ()
    # why the strategy's latest pricing no longer holds for this plan (another transaction now
    # lands in front of the backrun), None while it holds; asked right before the send
    repriced: Callable[[], str | None] | None = None
    token_symbol: str | None = None  # the start token's, copied onto the trade for clients
    token_decimals: int | None = None

    @classmethod
    def backrun(
        cls,
        plan: Plan,
        trigger: Trigger,
        ahead: Sequence[Ahead] = (),
        between: Sequence[Ahead] = (),
        repriced: Callable[[], str | None] | None = None,
    ) -> Plan:
        return dataclasses.replace(
            plan,
            trigger=trigger.request,
            trigger_raw=trigger.raw,
            trigger_hash=trigger.hash,
            ahead=tuple(a.request for a in ahead),
            ahead_hashes=tuple(a.hash for a in ahead),
            between=tuple(b.request for b in between),
            between_hashes=tuple(b.hash for b in between),
            repriced=repriced,
        )

    @property
    def before(self) -> list[TxRequest]:
        """What runs in front of the executor call in the same block."""
        return [] if self.trigger is None else [*self.ahead, self.trigger, *self.between]


def tx_dict(chain_id: int, tx: TxRequest, nonce: int) -> dict[str, Any]:
    """The EIP-1559 transaction to sign."""
    return {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": tx.to,
        "value": tx.value,
        "data": tx.data,
        "gas": tx.gas,
        "maxFeePerGas": tx.max_fee_per_gas,
        "maxPriorityFeePerGas": tx.max_priority_fee_per_gas,
    }


@dataclass(frozen=True, slots=True)
class Sent:
    """What went out for a trade: enough to replace it at the same nonce."""

    plan: Plan
    args: ExecuteArgs  # with the on-chain minimum it was signed with
    tx: TxRequest
    nonce: int
    candidate: Candidate  # what the risk gate passed: a replacement must pass it again


@dataclass(frozen=True, slots=True)
class Outcome:
    trade: Trade | None
    refused: str | None = None
    simulation: ExecutionSimulation | None = None
    signed: SignedTx | None = None
    sent: Sent | None = None


async def mark_opportunity(
    store: Store, publish: Publish | None, chain: str, opportunity_id: str | None, status: str
) -> None:
    """Move a stored opportunity to ``status`` and publish it again (no such opportunity, as for
    API calls and tests without one: nothing)."""
    if opportunity_id is None:
        return
    try:
        document = store.set_opportunity_status(opportunity_id, status)
    except NotFound:
        return
    if publish is not None:
        await publish("mev.opportunity", chain, document)


class Pipeline:
    """Executes plans on one chain for one operator account."""

    def __init__(
        self,
        *,
        chain: ChainContext,
        rpc: JsonRpc,
        store: Store,
        state: TradingState,
        submitter: Submitter,
        lease: ExecutionLease,
        operator: str,
        publish: Publish | None = None,
    ) -> None:
        self.chain = chain
        self.rpc = rpc
        self.store = store
        self.state = state
        self.submitter = submitter
        self.lease = lease
        self.operator = to_checksum_address(operator)
        self.publish = publish
        self.l1_fees = L1Fees(rpc)

    async def _refuse(self, plan: Plan, reason: str, sim: ExecutionSimulation | None) -> Outcome:
        self.store.audit(
            "pipeline",
            "trade.refused",
            {"chain": self.chain.name, "opportunity_id": plan.opportunity_id, "reason": reason},
        )
        # (not every plan comes from a stored opportunity: API calls, tests)
        await mark_opportunity(
            self.store, self.publish, self.chain.name, plan.opportunity_id, "rejected"
        )
        return Outcome(None, reason, sim)

    async def _event(self, name: str, trade: Trade) -> None:
        if self.publish is not None:
            await self.publish(name, self.chain.name, trade.to_json())

    async def execute(self, plan: Plan, *, candidate: Candidate, auto: bool = False) -> Outcome:
        """Run ``plan`` through the gates and, if it passes, sign and send it."""
        if auto and not self.state.auto_execute:
            return await self._refuse(plan, "auto_execute is off", None)
        decision = self.state.check(candidate)
        if not decision.ok:
            return await self._refuse(plan, decision.reason or "refused by risk", None)
        args = plan.args
        if to_checksum_address(args.start_token) != to_checksum_address(self.chain.wrapped_native):
            return await self._refuse(plan, "start token is not the wrapped native token", None)
        priority_fee = plan.priority_fee
        if plan.trigger is not None:
            _, priority_fee = backrun_fees(
                plan.trigger, max_fee=plan.trigger.max_fee_per_gas, priority_fee=priority_fee
            )
        tx, sim = await prepare_execute(
            self.rpc,
            executor=self.chain.executor,
            operator=self.operator,
            args=args,
            priority_fee=priority_fee,
            block_time=self.chain.block_time,
            before=plan.before,
        )
        if plan.trigger is not None:
            max_fee, _ = backrun_fees(
                plan.trigger, max_fee=tx.max_fee_per_gas, priority_fee=priority_fee
            )
            tx = dataclasses.replace(tx, max_fee_per_gas=max_fee)
        if not sim.success:
            return await self._refuse(plan, f"simulation reverted: {sim.revert_reason}", sim)
        # OP stack: the L1 data fee on top, for the longest nonce and with room for the L1
        # price to move before inclusion (like the fee cap's doubled base fee)
        l1_fee = await self.l1_fees.of_unsigned(
            unsigned_eip1559(tx_dict(self.chain.chain_id, tx, MAX_NONCE))
        )
        worst_gas_cost = tx.gas * tx.max_fee_per_gas + L1_FEE_HEADROOM * l1_fee
        net = sim.balance_change - worst_gas_cost
        if net < max(self.chain.min_net_profit_wei, 1):
            return await self._refuse(
                plan,
                f"net profit {net} wei after gas {worst_gas_cost} wei is below "
                f"min_net_profit_wei {self.chain.min_net_profit_wei}",
                sim,
            )
        # the contract itself refuses to land below the worst-case gas plus the minimum
        args = dataclasses.replace(args, min_profit=worst_gas_cost + self.chain.min_net_profit_wei)
        tx = dataclasses.replace(tx, data=encode_execute(args))
        context = await next_block_context(self.rpc, block_time=self.chain.block_time)
        sim = await simulate_execute(self.rpc, tx, args, context=context, before=plan.before)
        if not sim.success:
            return await self._refuse(plan, f"final simulation reverted: {sim.revert_reason}", sim)
        trade = Trade(
            id=uuid.uuid4().hex,
            chain=self.chain.name,
            route=self.chain.route,
            token=to_checksum_address(args.start_token),
            opportunity_id=plan.opportunity_id,
            amount_in=args.amount_in,
            expected_profit=sim.balance_change,
            token_symbol=plan.token_symbol,
            token_decimals=plan.token_decimals,
        )
        if self.state.mode == "paper":
            stored = self.store.insert_trade(
                dataclasses.replace(
                    trade, status="cancelled", error="paper mode: simulated, not signed"
                )
            )
            return Outcome(stored, None, sim)
        ahead: tuple[Ahead, ...] = ()
        if plan.trigger_hash is not None:
            try:
                await pending_trigger(self.rpc, plan.trigger_hash)
                ahead = await load_ahead(self.rpc, plan.ahead_hashes)
                await load_ahead(self.rpc, plan.between_hashes)
            except TriggerGone as exc:  # AheadUnknown included
                return await self._refuse(plan, str(exc), sim)
            stale = None if plan.repriced is None else plan.repriced()
            if stale is not None:
                return await self._refuse(plan, stale, sim)
        epoch = await self.lease.check()
        stored = self.store.insert_trade(dataclasses.replace(trade, fencing_epoch=epoch))
        self.state.set_in_flight(self.chain.name, self.state.in_flight.get(self.chain.name, 0) + 1)

        def build(nonce: int) -> dict[str, Any]:
            return tx_dict(self.chain.chain_id, tx, nonce)

        def on_signed(signed: SignedTx) -> None:
            # the hash is on the row before the transaction can be on the wire
            self.store.update_trade(stored.id, tx_hashes=(signed.hash,))

        try:
            signed, sent = await self.submitter.submit(
                build,
                target_block=context.number,
                expires_at_block=plan.expires_at_block,
                trigger_raw=plan.trigger_raw,
                ahead_raws=tuple(a.raw for a in ahead),
                on_signed=on_signed,
            )
        except MevstackError as exc:
            self._done_in_flight()
            failed = self.store.update_trade(stored.id, status="failed", error=str(exc)[:500])
            await self._event("trade.failed", failed)
            await self._mark(plan, "failed")
            return Outcome(failed, None, sim)
        if not sent.consumed:
            self._done_in_flight()
            failed = self.store.update_trade(
                stored.id,
                status="failed",
                error=f"not included by block {plan.expires_at_block}",
            )
            await self._event("trade.failed", failed)
            await self._mark(plan, "failed")
            return Outcome(failed, None, sim, signed)
        # the trade's own transaction is the one followed (a bundle lists others before it)
        hashes = (*(h for h in sent.tx_hashes if h != signed.hash), signed.hash)
        submitted = self.store.update_trade(stored.id, status="submitted", tx_hashes=hashes)
        await self._event("trade.submitted", submitted)
        await self._mark(plan, "submitted")
        return Outcome(submitted, None, sim, signed, Sent(plan, args, tx, signed.nonce, candidate))

    async def _mark(self, plan: Plan, status: str) -> None:
        await mark_opportunity(
            self.store, self.publish, self.chain.name, plan.opportunity_id, status
        )

    async def replacement(self, sent: Sent) -> Sent | None:
        """``sent`` again at the same nonce with both fees bumped (and at least the next block's
        fee cap), re-simulated now; ``None`` when it no longer pays (see the module docstring).
        A backrun is never replaced: its trigger's block has passed."""
        if sent.plan.trigger is not None:
            return None
        old = sent.tx
        context = await next_block_context(self.rpc, block_time=self.chain.block_time)
        max_fee, tip = replacement_fees(old.max_fee_per_gas, old.max_priority_fee_per_gas)
        max_fee = max(max_fee, 2 * context.base_fee + tip)
        tx = dataclasses.replace(old, max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip)
        l1_fee = await self.l1_fees.of_unsigned(
            unsigned_eip1559(tx_dict(self.chain.chain_id, tx, MAX_NONCE))
        )
        worst_gas_cost = tx.gas * max_fee + L1_FEE_HEADROOM * l1_fee
        args = dataclasses.replace(
            sent.args, min_profit=worst_gas_cost + self.chain.min_net_profit_wei
        )
        tx = dataclasses.replace(tx, data=encode_execute(args))
        sim = await simulate_execute(self.rpc, tx, args, context=context)
        net = sim.balance_change - worst_gas_cost
        if not sim.success or net < max(self.chain.min_net_profit_wei, 1):
            return None
        # mode, pauses, blocklist and caps hold for a replacement as for the first send
        candidate = dataclasses.replace(
            sent.candidate, max_fee_per_gas_wei=max_fee, net_profit_wei=net
        )
        decision = self.state.check(candidate, replacing=True)
        if not decision.ok:
            log.info(
                "replacement refused by the risk gate (a cancellation goes instead): %s",
                decision.reason,
            )
            return None
        return Sent(sent.plan, args, tx, sent.nonce, candidate)

    def _done_in_flight(self) -> None:
        count = self.state.in_flight.get(self.chain.name, 0)
        self.state.set_in_flight(self.chain.name, max(0, count - 1))
