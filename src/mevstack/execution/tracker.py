"""Following trades to their outcome, and reconciling in-flight trades after a restart.

* :meth:`Tracker.settle` turns a ``submitted`` trade into ``included`` or ``reverted`` from its
  receipt: ``realized_profit`` is the executor's balance change of the start token between the
  block before and the block of inclusion (read from the chain, not from the expectation;
  exact because only the operator can call the executor), ``gas_used``, ``gas_cost_wei =
  gasUsed × effectiveGasPrice + L1 data fee``, and ``net_pnl_wei = realized − gas cost`` (a
  reverted trade realizes 0 and still pays its gas).  The chain's P&L of the day is updated.
  The L1 data fee comes from :mod:`mevstack.execution.l1fee`.
* :meth:`Tracker.reconcile` runs on start (or when a replica takes the lease) over this chain's
  ``pending`` / ``submitted`` rows: a row that never got a hash was never signed and fails; a
  row with a hash that the chain does not know was never sent (the process died between the
  write-ahead and the send) and fails **without a second send**; a known one is settled when
  mined, else stays ``submitted``.

* :meth:`Tracker.refresh` follows settled trades until they have the chain's ``confirmations``:
  a trade whose receipt disappeared or moved to another block (a reorg; compared by block hash,
  so a re-mining at the same height counts too) goes back to ``submitted`` and its P&L is
  rolled back (re-settled if it was mined again elsewhere).
* :meth:`Tracker.recheck` looks again at trades already final, within a window of recent blocks,
  after the chain changed under them (a reorg deeper than ``confirmations``, a node that came
  back shorter): one whose block no longer holds it goes back to ``submitted`` the same way.
* :meth:`Tracker.fail` settles a ``submitted`` trade that can no longer land (its nonce was
  taken by another transaction, or it was cancelled) as ``failed``, charging a cancellation's gas.
* An executed opportunity follows its trade (``included``, ``failed``, back to ``submitted``),
  published again as a ``mev.opportunity`` event.
* :func:`refresh_native_balance` feeds the operator's balance to the trading state (the floor
  below which the chain pauses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from eth_abi.abi import decode as abi_decode

from mevstack.chain.rpc import JsonRpc
from mevstack.errors import MevstackError
from mevstack.execution.encode import encode_balance_of
from mevstack.execution.l1fee import L1Fees
from mevstack.execution.pipeline import ChainContext, Publish, mark_opportunity
from mevstack.execution.trading_state import TradingState
from mevstack.store import Store, Trade

log = logging.getLogger(__name__)


class TrackingTimeout(MevstackError):
    """A trade was not mined within the time allowed."""


class Tracker:
    def __init__(
        self,
        *,
        chain: ChainContext,
        rpc: JsonRpc,
        store: Store,
        state: TradingState,
        publish: Publish | None = None,
    ) -> None:
        self.chain = chain
        self.rpc = rpc
        self.store = store
        self.state = state
        self.publish = publish
        self.l1_fees = L1Fees(rpc)

    async def _balance(self, token: str, block: int) -> int:
        call = {"to": token, "data": "0x" + encode_balance_of(self.chain.executor).hex()}
        raw = await self.rpc.request("eth_call", [call, hex(block)])
        (value,) = abi_decode(["uint256"], bytes.fromhex(str(raw)[2:]))
        return int(value)

    async def receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        """The transaction's receipt once it is mined, else None."""
        receipt = await self.rpc.request("eth_getTransactionReceipt", [tx_hash])
        return receipt if isinstance(receipt, dict) and receipt.get("blockNumber") else None

    async def settle(self, trade: Trade, receipt: Mapping[str, Any]) -> Trade:
        block = int(receipt["blockNumber"], 16)
        gas_used = int(receipt["gasUsed"], 16)
        l1_fee = await self.l1_fees.paid(receipt)
        gas_cost = gas_used * int(receipt["effectiveGasPrice"], 16) + l1_fee
        success = receipt.get("status") == "0x1"
        realized = 0
        if success:
            after = await self._balance(trade.token, block)
            realized = after - await self._balance(trade.token, block - 1)
        net = realized - gas_cost
        head = int(await self.rpc.request("eth_blockNumber", []), 16)
        # the transaction that landed is the one followed from now on (a replacement, or the
        # original that beat its replacement)
        landed = str(receipt.get("transactionHash") or "").lower()
        hashes = trade.tx_hashes
        if landed in hashes and hashes[-1] != landed:
            hashes = (*(h for h in hashes if h != landed), landed)
        settled = self.store.update_trade(
            trade.id,
            tx_hashes=hashes,
            status="included" if success else "reverted",
            realized_profit=realized,
            gas_used=gas_used,
            gas_cost_wei=gas_cost,
            net_pnl_wei=net,
            block_number=block,
            block_hash=str(receipt.get("blockHash") or "").lower() or None,
            confirmations=max(0, head - block + 1),
            error=None if success else "reverted on chain",
        )
        self.state.record_pnl(self.chain.name, net)
        count = self.state.in_flight.get(self.chain.name, 0)
        self.state.set_in_flight(self.chain.name, max(0, count - 1))
        if self.publish is not None:
            name = "trade.included" if success else "trade.failed"
            await self.publish(name, self.chain.name, settled.to_json())
        await self._mark(trade, "included" if success else "failed")
        return settled

    async def _mark(self, trade: Trade, status: str) -> None:
        await mark_opportunity(
            self.store, self.publish, self.chain.name, trade.opportunity_id, status
        )

    async def fail(
        self, trade: Trade, error: str, *, cancel_receipt: Mapping[str, Any] | None = None
    ) -> Trade:
        """Settle a ``submitted`` trade that can no longer land as ``failed``; the gas of the
        cancellation that took its nonce (``cancel_receipt``) is its cost."""
        gas_cost: int | None = None
        if cancel_receipt is not None:
            gas_cost = int(cancel_receipt["gasUsed"], 16) * int(
                cancel_receipt["effectiveGasPrice"], 16
            ) + await self.l1_fees.paid(cancel_receipt)
            self.state.record_pnl(self.chain.name, -gas_cost)
        failed = self.store.update_trade(
            trade.id,
            status="failed",
            error=error[:500],
            gas_cost_wei=gas_cost,
            net_pnl_wei=None if gas_cost is None else -gas_cost,
        )
        count = self.state.in_flight.get(self.chain.name, 0)
        self.state.set_in_flight(self.chain.name, max(0, count - 1))
        log.info("chain %s: trade %s failed: %s", self.chain.name, trade.id, error)
        if self.publish is not None:
            await self.publish("trade.failed", self.chain.name, failed.to_json())
        await self._mark(trade, "failed")
        return failed

    async def wait(self, trade_id: str, *, within: float = 30.0) -> Trade:
        """Poll the trade's receipt until mined (deadline ``within`` seconds), then settle."""
        trade = self.store.get_trade(trade_id)
        if trade is None or not trade.tx_hashes:
            raise TrackingTimeout(f"trade {trade_id} has no transaction to follow")
        deadline = time.monotonic() + within
        poll = min(max(self.chain.block_time / 10, 0.01), 0.5)
        while (receipt := await self.receipt(trade.tx_hashes[-1])) is None:
            if time.monotonic() > deadline:
                raise TrackingTimeout(f"trade {trade_id} not mined within {within} s")
            await asyncio.sleep(poll)  # polling the receipt with a deadline
        return await self.settle(trade, receipt)

    async def refresh(self, confirmations: int) -> list[Trade]:
        """Update confirmations of settled, not yet final trades; undo those a reorg removed."""
        head = int(await self.rpc.request("eth_blockNumber", []), 16)
        changed: list[Trade] = []
        for status in ("included", "reverted"):
            page = self.store.list_trades(chain=self.chain.name, status=status, limit=500)
            for trade in page.items:
                if trade.confirmations >= confirmations or not trade.tx_hashes:
                    continue
                receipt = await self.receipt(trade.tx_hashes[-1])
                block = None if receipt is None else int(receipt["blockNumber"], 16)
                if (
                    block is not None
                    and block == trade.block_number
                    and _same_block(trade, receipt)
                ):
                    depth = max(0, head - block + 1)
                    if depth != trade.confirmations:
                        changed.append(self.store.update_trade(trade.id, confirmations=depth))
                    continue
                changed.append(await self._undo(trade, receipt))
        return changed

    async def _undo(self, trade: Trade, receipt: Mapping[str, Any] | None) -> Trade:
        self.state.record_pnl(self.chain.name, -(trade.net_pnl_wei or 0))
        count = self.state.in_flight.get(self.chain.name, 0)
        self.state.set_in_flight(self.chain.name, count + 1)
        back = self.store.update_trade(
            trade.id,
            status="submitted",
            realized_profit=None,
            gas_used=None,
            gas_cost_wei=None,
            net_pnl_wei=None,
            block_number=None,
            block_hash=None,
            confirmations=0,
            error=None,
        )
        if self.publish is not None:
            await self.publish("trade.submitted", self.chain.name, back.to_json())
        await self._mark(trade, "submitted")
        if receipt is not None:
            return await self.settle(back, receipt)
        return back

    async def recheck(self, confirmations: int, window: int) -> list[Trade]:
        """Settled trades with at least ``confirmations`` (0: all) mined in the last ``window``
        blocks whose block no longer holds them go back to ``submitted`` (module docstring)."""
        head = int(await self.rpc.request("eth_blockNumber", []), 16)
        changed: list[Trade] = []
        for status in ("included", "reverted"):
            page = self.store.list_trades(chain=self.chain.name, status=status, limit=500)
            for trade in page.items:
                if (
                    trade.confirmations < confirmations
                    or not trade.tx_hashes
                    or trade.block_number is None
                    or trade.block_number < head - window
                ):
                    continue
                receipt = await self.receipt(trade.tx_hashes[-1])
                block = None if receipt is None else int(receipt["blockNumber"], 16)
                if block == trade.block_number and _same_block(trade, receipt):
                    continue
                log.info(
                    "chain %s: final trade %s is no longer in block %d (deep reorg): back to "
                    "submitted",
                    self.chain.name,
                    trade.id,
                    trade.block_number,
                )
                changed.append(await self._undo(trade, receipt))
        return changed

    async def reconcile(self) -> list[Trade]:
        """Resolve this chain's in-flight rows against the chain (see the module docstring)."""
        changed: list[Trade] = []
        for status in ("pending", "submitted"):
            page = self.store.list_trades(chain=self.chain.name, status=status, limit=500)
            for trade in page.items:
                if not trade.tx_hashes:
                    changed.append(await self.fail(trade, "never signed (stopped before)"))
                    continue
                receipt = await self.receipt(trade.tx_hashes[-1])
                if receipt is not None:
                    changed.append(await self.settle(trade, receipt))
                    continue
                known = await self.rpc.request("eth_getTransactionByHash", [trade.tx_hashes[-1]])
                if known is None and status == "pending":
                    changed.append(
                        await self.fail(
                            trade, "signed but never sent (stopped before the send); not re-sent"
                        )
                    )
                elif known is not None and status == "pending":
                    # published and marked like any send, so clients and metrics follow it
                    submitted = self.store.update_trade(trade.id, status="submitted")
                    if self.publish is not None:
                        await self.publish("trade.submitted", self.chain.name, submitted.to_json())
                    await self._mark(trade, "submitted")
                    changed.append(submitted)
        return changed


def _same_block(trade: Trade, receipt: Mapping[str, Any] | None) -> bool:
    """Whether the receipt is from the very block the trade was settled in: a reorg can re-mine
    it at the same height in another block (other hash, possibly another outcome)."""
    if receipt is None:
        return False
    if trade.block_hash is None:
        return True  # settled before hashes were recorded: the height is all we know
    return str(receipt.get("blockHash") or "").lower() == trade.block_hash


async def refresh_native_balance(
    rpc: JsonRpc, state: TradingState, chain: str, operator: str
) -> int:
    """Read the operator's native balance and hand it to the trading state's balance floor."""
    balance = int(await rpc.request("eth_getBalance", [operator, "latest"]), 16)
    state.set_native_balance(chain, balance)
    return balance
