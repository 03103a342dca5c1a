"""Execution inside the running engine: one :class:`ChainExecution` per chain with an executor,
and the engine-wide lease (:func:`open_lease`).

A :class:`ChainExecution` owns the chain's NonceManager, Submitter (for the chain's ``route``),
Pipeline and Tracker, and a follow loop that settles submitted trades, counts confirmations
(a reorg sends a trade back to ``submitted``) and refreshes the operator's native balance.

The follow loop also heals what would otherwise block the chain:

* a ``submitted`` trade none of whose transactions landed within ``resubmit_after_blocks`` is
  replaced at its nonce (both fees bumped, re-simulated as still profitable) or, when it no
  longer pays (or is a backrun), cancelled with a 0-value self-transfer; it settles ``failed``
  once its nonce is taken by anything else, and is given up after ``MAX_RESUBMITS`` rounds (or
  at once when neither we nor the node know its nonce any more: a send from before a restart
  the node never kept);
* a change of the chain under the blocks it already saw (the last seen head replaced, or the
  chain shorter) re-checks trades already final within ``REORG_WINDOW`` blocks, and so does
  the first pass after a start;
* the in-flight count is recounted from the store's active trades, and with nothing in flight
  a chain whose pending nonce stays behind ours for ``resubmit_after_blocks`` (it came back
  shorter, taking some of our transactions with it) is trusted, so the next nonce is one the
  chain can use.

Opportunities reach it two ways: :meth:`ChainExecution.execute` (the API's execute: at most one
active trade per opportunity, the first answer repeated for a repeated ``Idempotency-Key``) and
:meth:`ChainExecution.offer` (auto-execution in live mode: one at a time per chain; the newest
offer replaces a pending one, and the pipeline's gate — kill switch, mode, blocklist, limits —
is checked when its turn comes, so a kill switch stops a pending auto-execution).

A backrun's plan carries its trigger and the pending transactions it was priced behind
(``ahead_txs`` before the trigger, ``between_txs`` after it), read from the node when its turn
comes (:mod:`mevstack.execution.trigger`): a trigger no longer pending, or such a transaction
dropped or replaced, is the refusal; so is a backrun the strategy has since priced behind a
transaction its plan does not simulate (it arrived after the pricing the plan was made from).
Auto-execution takes backruns as well as arbitrages: a backrun is offered while its trigger is
pending and withdrawn (published ``expired``) once it is mined, dropped or replaced; one that is
picked in the meantime is refused by the trigger check, never sent alone.  After a trade,
whatever was priced on the market before the trade's block is dropped (the trade moved it; an
arbitrage and a backrun through the same pools conflict), and what was priced on the new market
stays.

Only the lease holder signs: the Signer and the Pipeline check the lease before every signature
and send, and a replica that acquires the lease reconciles every chain's in-flight trades first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from mevstack.api.view import BadRequest, Conflict, NotAvailable
from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.config import ChainConfig, Settings
from mevstack.errors import MevstackError
from mevstack.execution.balances import refresh_executor_balance
from mevstack.execution.encode import ExecuteArgs, Hop, PathError, PoolKind, encode_balance_of
from mevstack.execution.lease import ExecutionLease, LeaseLost, LocalLease, RedisLease
from mevstack.execution.nonces import NonceManager, cancellation_tx, replacement_fees
from mevstack.execution.pipeline import (
    ChainContext,
    Outcome,
    Pipeline,
    Plan,
    Publish,
    Sent,
    mark_opportunity,
    tx_dict,
)
from mevstack.execution.risk import Candidate, paused_reason
from mevstack.execution.routes import (
    BundleRoute,
    PrivateRoute,
    PublicRoute,
    Route,
    Signer,
    Submitter,
)
from mevstack.execution.tracker import Tracker, refresh_native_balance
from mevstack.execution.trading_state import KillSwitchEngaged, TradingState
from mevstack.execution.trigger import TriggerGone, load_ahead, load_trigger
from mevstack.market.state import PoolStore
from mevstack.obs.metrics import TRADES_REPLACED
from mevstack.store import Store, Trade
from mevstack.store.store import Conflict as StoreConflict
from mevstack.strategy.opportunity import Opportunity

log = logging.getLogger(__name__)

ACTIVE_TRADE_STATUSES = ("pending", "submitted")
DEFAULT_PRIORITY_FEE_WEI = 10**9
MAX_IDEMPOTENCY_KEYS = 10_000  # answers remembered per chain, oldest forgotten first
AUTO_TRIES = 3  # candidates tried per scan before waiting for the next one
MAX_RESUBMITS = 3  # replacements / cancellations of one trade before it is given up
MAX_REMEMBERED_SENDS = 1_000  # trades whose transaction is kept to replace it after a reorg
REORG_WINDOW = 256  # blocks back in which final trades are re-checked after a deep reorg


@dataclass
class _Watch:
    """A submitted trade not landed yet: what went out last at its nonce, and since when."""

    since: int | None = None  # the head when its last transaction went out (or was first seen)
    sent: Sent | None = None  # the trade's transaction (None: sent before a restart)
    nonce: int | None = None
    fees: tuple[int, int] | None = None  # (max fee, tip) of the last transaction at the nonce
    rounds: int = 0
    cancels: list[str] = field(default_factory=list)  # cancellations sent at its nonce


# -- pure helpers -----------------------------------------------------------------------------


def execute_args(opportunity: Opportunity, pools: PoolStore) -> ExecuteArgs:
    """The executor call for an arbitrage opportunity, from the market's pool facts.

    Flash mode (the first V2 pair lends the input) whenever the path allows it, so the executor
    needs no inventory; otherwise the executor's own balance of the start token is used.
    """
    hops: list[Hop] = []
    for i, hop in enumerate(opportunity.path):
        info = pools.info(hop.pool)
        if info is None:
            raise PathError(f"hop {i}: pool {hop.pool} is not in the market")
        if info.kind not in ("uniswap_v2", "uniswap_v3"):
            raise PathError(f"hop {i}: pool kind {info.kind!r} cannot be executed")
        kind: PoolKind = "uniswap_v2" if info.kind == "uniswap_v2" else "uniswap_v3"
        hops.append(
            Hop(
                pool=to_checksum_address(info.address),
                kind=kind,
                token_in=to_checksum_address(hop.token_in),
                token_out=to_checksum_address(hop.token_out),
                zero_for_one=hop.token_in.lower() == info.token0.lower(),
                fee=info.fee if kind == "uniswap_v2" else 0,
                amount_in=hop.amount_in,
                amount_out=hop.amount_out,
            )
        )
    first = hops[0] if hops else None
    flash = (
        first is not None
        and first.kind == "uniswap_v2"
        and all(h.pool.lower() != first.pool.lower() for h in hops[1:])
    )
    return ExecuteArgs(
        start_token=to_checksum_address(opportunity.token),
        amount_in=opportunity.amount_in,
        path=tuple(hops),
        flash=flash,
    )


def chain_context(config: ChainConfig) -> ChainContext:
    if config.executor is None:
        raise MevstackError(f"chain {config.name}: no executor configured")
    return ChainContext(
        name=config.name,
        chain_id=config.chain_id,
        block_time=config.block_time,
        wrapped_native=to_checksum_address(config.wrapped_native),
        executor=to_checksum_address(config.executor),
        route=config.route,
        min_net_profit_wei=config.min_net_profit_wei,
    )


# -- the lease --------------------------------------------------------------------------------


def lease_held(lease: ExecutionLease) -> bool:
    if isinstance(lease, RedisLease):
        return lease.held
    return lease.epoch is not None


def open_lease(
    settings: Settings,
    *,
    name: str,
    holder: str,
    on_acquire: Callable[[int], Awaitable[None]] | None,
    epoch_floor: Callable[[], Awaitable[int]] | None = None,
    ttl_ms: int = 3000,
    standby: bool = False,
) -> ExecutionLease:
    """LocalLease on a memory bus (one process), else a RedisLease on the bus's Redis."""
    url = settings.bus.url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        if standby:
            log.warning(
                "standby engine on bus %s: it can never take the execution lease, so it serves "
                "reads only (a redis:// bus shared with the primary gives failover)",
                url,
            )
        return LocalLease(held=not standby)
    from redis.asyncio import Redis

    redis: Redis = Redis.from_url(url)
    # replicas of one config share the source name; the host and pid keep holders distinct
    safe_holder = f"{holder}@{socket.gethostname()}-{os.getpid()}".replace("|", "/")
    return RedisLease(
        redis, name, safe_holder, ttl_ms=ttl_ms, on_acquire=on_acquire, epoch_floor=epoch_floor
    )


# -- one chain --------------------------------------------------------------------------------


class ChainExecution:
    """Execution on one chain; see the module docstring."""

    def __init__(
        self,
        config: ChainConfig,
        *,
        pools: Callable[[], PoolStore | None],
        endpoints: list[JsonRpc],
        rpc: JsonRpc,
        store: Store,
        state: TradingState,
        lease: ExecutionLease,
        account: LocalAccount,
        publish: Publish | None,
        gas_tip: Callable[[], int | None],
        on_paused: Callable[[str, str], Awaitable[None]] | None = None,
        backruns: Callable[[str], Opportunity | None] | None = None,
    ) -> None:
        self.config = config
        self.backruns = backruns  # the strategy's latest pricing of a live backrun, by id
        self.name = config.name
        self.context = chain_context(config)
        self.pools = pools
        self.rpc = rpc
        self.store = store
        self.state = state
        self.lease = lease
        self.account = account
        self.gas_tip = gas_tip
        self.on_paused = on_paused
        self.nonces = NonceManager(config.name, account.address, endpoints, store=store)
        self.route = self._route(config, endpoints, account, lease)
        self.submitter = Submitter(
            self.route, self.nonces, Signer(account, state.gate, lease), lease
        )
        self.pipeline = Pipeline(
            chain=self.context,
            rpc=rpc,
            store=store,
            state=state,
            submitter=self.submitter,
            lease=lease,
            operator=account.address,
            publish=publish,
        )
        self.tracker = Tracker(
            chain=self.context, rpc=rpc, store=store, state=state, publish=publish
        )
        # opportunity id -> (its last trade, the block of the sighting it was made from)
        self._by_opportunity: dict[str, tuple[str, int]] = {}
        self._idempotent: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()  # one execution at a time on this chain
        self._pending: dict[str, Opportunity] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.refusals: list[tuple[str, str]] = []  # (opportunity id, reason), recent first
        self._watch: dict[str, _Watch] = {}  # submitted trade id -> its healing state
        # what went out for recent trades: a trade a reorg sends back is replaced from it
        self._sent: dict[str, Sent] = {}
        self._last_head: tuple[int, str] | None = None  # (number, hash) the loop saw last
        self._behind_since: int | None = None  # head when the chain's nonce fell behind ours

    @staticmethod
    def _route(
        config: ChainConfig, endpoints: list[JsonRpc], account: LocalAccount, lease: ExecutionLease
    ) -> Route:
        relays = [str(u) for u in config.relays]
        if config.route == "bundle":
            return BundleRoute(
                relays, account, endpoints[0], block_time=config.block_time, fence=lease.check
            )
        if config.route == "private":
            return PrivateRoute(relays, account)
        return PublicRoute(endpoints)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(), name=f"trades-{self.name}"),
            asyncio.create_task(self._auto(), name=f"auto-execute-{self.name}"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        aclose = getattr(self.route, "aclose", None)
        if aclose is not None:
            await aclose()

    # -- planning -------------------------------------------------------------------------------

    def _plan(self, opportunity: Opportunity) -> tuple[Plan, Candidate]:
        if opportunity.kind not in ("arbitrage", "backrun"):
            raise BadRequest(f"opportunity {opportunity.id}: unknown kind {opportunity.kind!r}")
        if opportunity.kind == "backrun" and not opportunity.trigger_tx:
            raise BadRequest(f"opportunity {opportunity.id}: a backrun without its trigger_tx")
        pools = self.pools()
        if pools is None:
            raise NotAvailable(f"chain {self.name}: the market is not loaded yet")
        try:
            args = execute_args(opportunity, pools)
        except PathError as exc:
            raise BadRequest(f"opportunity {opportunity.id}: {exc}") from None
        tip = self.gas_tip()
        plan = Plan(
            opportunity_id=opportunity.id,
            args=args,
            expires_at_block=opportunity.expires_at_block,
            priority_fee=DEFAULT_PRIORITY_FEE_WEI if tip is None else max(tip, 1),
            token_symbol=opportunity.token_symbol,
            token_decimals=opportunity.token_decimals,
        )
        candidate = Candidate.from_opportunity(
            opportunity.to_json(),
            max_fee_per_gas_wei=opportunity.gas_price_wei,
            wrapped_native=self.config.wrapped_native,
        )
        return plan, candidate

    def _active_trade(self, opportunity_id: str, sighting: int | None = None) -> Trade | None:
        """The opportunity's trade in flight, or (given ``sighting``, its block) the trade
        already made from that very sighting: one trade per sighting, whatever its outcome.
        Ids are stable per path, so a later sighting of the same path may trade again."""
        made = self._by_opportunity.get(opportunity_id)
        if made is not None:
            trade = self.store.get_trade(made[0])
            if trade is not None and (trade.status in ACTIVE_TRADE_STATUSES or made[1] == sighting):
                return trade
        # (one indexed query on the opportunity, not a scan of every active trade of the chain)
        page = self.store.list_trades(chain=self.name, opportunity_id=opportunity_id, limit=50)
        for trade in page.items:
            if trade.status in ACTIVE_TRADE_STATUSES:
                return trade
        return None

    async def _inventory_short(self, args: ExecuteArgs) -> str | None:
        """Why a path that cannot borrow its input cannot run on the executor's inventory."""
        if args.flash:
            return None
        call = {
            "to": args.start_token,
            "data": "0x" + encode_balance_of(self.context.executor).hex(),
        }
        raw = await self.rpc.request("eth_call", [call, "latest"])
        held = int(str(raw), 16)
        if held >= args.amount_in:
            return None
        return (
            f"executor holds {held} of start token {args.start_token}, the path needs "
            f"{args.amount_in} (its first hop cannot lend it)"
        )

    async def _run(self, opportunity: Opportunity, *, auto: bool) -> Outcome:
        plan, candidate = self._plan(opportunity)
        # the risk gate's refusal (kill switch, mode, limits) comes first, from the pipeline; a
        # backrun refused there has no trigger loaded, and nothing awaits between this check and
        # the pipeline's, so it cannot go out without its trigger
        short: str | None = None
        if self.state.check(candidate).ok:
            short = await self._inventory_short(plan.args)
            if short is None and opportunity.kind == "backrun" and opportunity.trigger_tx:
                try:
                    trigger = await load_trigger(self.rpc, opportunity.trigger_tx)
                    ahead = await load_ahead(self.rpc, opportunity.ahead_txs)
                    between = await load_ahead(self.rpc, opportunity.between_txs)
                    plan = Plan.backrun(
                        plan, trigger, ahead, between, self._repriced_check(opportunity)
                    )
                except TriggerGone as exc:  # dropped, replaced or already mined
                    short = str(exc)
        if short is not None:
            await mark_opportunity(
                self.store, self.pipeline.publish, self.name, opportunity.id, "rejected"
            )
            self.refusals.insert(0, (opportunity.id, short))
            del self.refusals[50:]
            self.store.audit(
                "engine",
                "trade.refused",
                {"chain": self.name, "opportunity_id": opportunity.id, "reason": short},
            )
            return Outcome(None, short)
        outcome = await self.pipeline.execute(plan, candidate=candidate, auto=auto)
        if outcome.trade is not None:
            self._by_opportunity[opportunity.id] = (outcome.trade.id, opportunity.block_number)
            if outcome.sent is not None:
                self._sent[outcome.trade.id] = outcome.sent
                while len(self._sent) > MAX_REMEMBERED_SENDS:
                    del self._sent[next(iter(self._sent))]  # the oldest first
        elif outcome.refused is not None:
            self.refusals.insert(0, (opportunity.id, outcome.refused))
            del self.refusals[50:]
        return outcome

    def _repriced_check(self, opportunity: Opportunity) -> Callable[[], str | None] | None:
        """Whether the strategy still prices ``opportunity`` (a live backrun) behind the same
        transactions: a pending one that arrived since and lands in front of the backrun (or a
        withdrawal) makes the simulated profit wrong."""
        latest_of = self.backruns
        if latest_of is None or latest_of(opportunity.id) is None:
            return None  # not one the strategy prices live (made elsewhere): nothing to compare
        priced = {*opportunity.ahead_txs, *opportunity.between_txs}

        def repriced() -> str | None:
            latest = latest_of(opportunity.id)
            if latest is None:
                return f"backrun {opportunity.id} is no longer priced (withdrawn)"
            new = [h for h in (*latest.ahead_txs, *latest.between_txs) if h not in priced]
            if new:
                return (
                    f"pending transaction {new[0]} now lands in front of the backrun, "
                    "which was priced without it"
                )
            return None

        return repriced

    def repeated(self, idempotency_key: str) -> dict[str, Any] | None:
        return self._idempotent.get(idempotency_key)

    def trade_for(self, opportunity_id: str) -> dict[str, Any] | None:
        trade = self._active_trade(opportunity_id)
        return None if trade is None else trade.to_json()

    # -- the API's execute ------------------------------------------------------------------------

    async def execute(
        self, opportunity: Opportunity, idempotency_key: str | None
    ) -> dict[str, Any]:
        """The Trade document for ``opportunity``: an existing active one, or a new one."""
        if idempotency_key is not None and idempotency_key in self._idempotent:
            return self._idempotent[idempotency_key]
        async with self._lock:
            if idempotency_key is not None and idempotency_key in self._idempotent:
                return self._idempotent[idempotency_key]
            existing = self._active_trade(opportunity.id, opportunity.block_number)
            if existing is not None:
                answer = existing.to_json()
            else:
                if self.state.mode == "observe":
                    raise Conflict("engine.mode is observe: the engine never signs")
                if not lease_held(self.lease):
                    raise NotAvailable("this engine does not hold the execution lease (standby)")
                try:
                    outcome = await self._run(opportunity, auto=False)
                except StoreConflict:
                    # another replica holds an active trade for it (the store enforces one)
                    existing = self._active_trade(opportunity.id)
                    if existing is None:
                        raise Conflict(
                            f"opportunity {opportunity.id} already has an active trade"
                        ) from None
                    return existing.to_json()
                except LeaseLost as exc:
                    raise NotAvailable(str(exc)) from None
                if outcome.trade is None:
                    raise Conflict(f"refused: {outcome.refused}")
                answer = outcome.trade.to_json()
            if idempotency_key is not None:
                self._idempotent[idempotency_key] = answer
                while len(self._idempotent) > MAX_IDEMPOTENCY_KEYS:
                    del self._idempotent[next(iter(self._idempotent))]  # the oldest first
            return answer

    # -- auto-execution ---------------------------------------------------------------------------

    def offer(self, opportunity: Opportunity) -> None:
        """A newly detected opportunity, for auto-execution (live mode, auto_execute on)."""
        if self.state.mode != "live" or not self.state.auto_execute:
            return
        if opportunity.status != "detected":
            return
        if opportunity.kind == "backrun":
            if not opportunity.trigger_tx:
                return  # nothing to land behind
        elif opportunity.kind != "arbitrage":
            return
        if opportunity.token.lower() != self.config.wrapped_native.lower():
            return  # the gate values profit in native wei only (see the pipeline)
        self._pending[opportunity.id] = opportunity
        self._wake.set()

    def withdraw(self, opportunity_id: str) -> None:
        self._pending.pop(opportunity_id, None)

    async def _auto(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not lease_held(self.lease):
                self._pending.clear()
                continue
            # best first; a refused one (simulation, limits, trigger gone) hands the turn on
            for _ in range(AUTO_TRIES):
                if not self._pending:
                    break
                best = max(self._pending.values(), key=lambda o: o.net_profit_wei)
                del self._pending[best.id]
                trade_id = await self._auto_one(best)
                if trade_id is not None:
                    self._drop_priced_before(trade_id)
                    break

    def _drop_priced_before(self, trade_id: str) -> None:
        """After a trade the market moved: drop what was priced before the trade's block
        (everything, if it did not land); offers priced on the block with it stay."""
        trade = self.store.get_trade(trade_id)
        mined = trade is not None and trade.status in ("included", "reverted")
        landed = trade.block_number if mined and trade is not None else None
        self._pending = {
            ident: o
            for ident, o in self._pending.items()
            if landed is not None and o.block_number >= landed
        }
        if self._pending:
            self._wake.set()

    async def _auto_one(self, opportunity: Opportunity) -> str | None:
        """One auto-execution; the id of the trade made, if one was."""
        try:
            async with self._lock:
                if self._active_trade(opportunity.id, opportunity.block_number) is not None:
                    return None
                outcome = await self._run(opportunity, auto=True)
            if outcome.trade is not None and outcome.trade.status == "submitted":
                await self._until_settled(outcome.trade.id)
            return None if outcome.trade is None else outcome.trade.id
        except MevstackError as exc:
            log.warning("chain %s: auto-execution of %s: %s", self.name, opportunity.id, exc)
        except Exception:
            log.exception("chain %s: auto-execution of %s failed", self.name, opportunity.id)
        return None

    async def _until_settled(self, trade_id: str) -> None:
        """Wait (bounded) until the follow loop has settled the trade: one at a time."""
        deadline = asyncio.get_running_loop().time() + max(10.0, self.config.block_time * 5)
        while asyncio.get_running_loop().time() < deadline:
            trade = self.store.get_trade(trade_id)
            if trade is None or trade.status != "submitted":
                return
            await asyncio.sleep(min(self.config.block_time / 10, 0.2))  # polled, with a deadline

    # -- following trades -------------------------------------------------------------------------

    async def _head(self) -> int:
        return int(await self.rpc.request("eth_blockNumber", []), 16)

    async def settle_submitted(self) -> list[Trade]:
        """Settle every ``submitted`` trade of this chain that is mined by now (any of its
        transactions, the newest first); heal the others (see the module docstring)."""
        settled: list[Trade] = []
        page = self.store.list_trades(chain=self.name, status="submitted", limit=500)
        head: int | None = None
        for trade in page.items:
            if not trade.tx_hashes:
                continue
            receipt = None
            for tx in reversed(trade.tx_hashes):
                if (receipt := await self.tracker.receipt(tx)) is not None:
                    break
            current = self.store.get_trade(trade.id)
            if current is None or current.status != "submitted":
                continue
            if receipt is not None:
                self._watch.pop(trade.id, None)
                settled.append(await self.tracker.settle(current, receipt))
                continue
            if head is None:
                head = await self._head()
            healed = await self._heal(current, head)
            if healed is not None:
                self._watch.pop(trade.id, None)
                settled.append(healed)
        live = {t.id for t in page.items}
        for ident in [i for i in self._watch if i not in live]:
            del self._watch[ident]
        return settled

    async def _heal(self, trade: Trade, head: int) -> Trade | None:
        """One look at a submitted trade none of whose transactions is mined: the trade settled
        (``failed``) when it can no longer land, else ``None`` (left, replaced or cancelled)."""
        watch = self._watch.get(trade.id)
        if watch is None:
            sent = self._sent.get(trade.id)
            watch = self._watch[trade.id] = _Watch(sent=sent)
            if sent is not None:
                watch.nonce = sent.nonce
                watch.fees = (sent.tx.max_fee_per_gas, sent.tx.max_priority_fee_per_gas)
        if watch.since is None:
            watch.since = head
        for cancel in watch.cancels:
            if (receipt := await self.tracker.receipt(cancel)) is not None:
                return await self.tracker.fail(
                    trade,
                    f"not landed within {self.config.resubmit_after_blocks} blocks; its nonce "
                    f"{watch.nonce} went to the cancellation {cancel}",
                    cancel_receipt=receipt,
                )
        if head - watch.since < self.config.resubmit_after_blocks:
            return None
        if watch.nonce is None:
            known = await self.rpc.request("eth_getTransactionByHash", [trade.tx_hashes[-1]])
            if isinstance(known, Mapping):
                watch.nonce = int(known["nonce"], 16)
                watch.fees = (
                    int(known.get("maxFeePerGas") or known["gasPrice"], 16),
                    int(known.get("maxPriorityFeePerGas") or known["gasPrice"], 16),
                )
        if watch.nonce is None:
            return await self._give_up(
                trade, "abandoned", "not landed, and neither we nor the node know it any more"
            )
        mined = await self.rpc.request("eth_getTransactionCount", [self.account.address, "latest"])
        if int(mined, 16) > watch.nonce:
            # the receipts were read before the count: one of ours may have been mined since,
            # and then it is the trade's own result, settled by the next pass
            for tx in trade.tx_hashes:
                if await self.tracker.receipt(tx) is not None:
                    return None
            return await self._give_up(
                trade,
                "nonce_consumed",
                f"nonce {watch.nonce} was taken by another transaction; this one never landed",
            )
        if watch.rounds >= MAX_RESUBMITS:
            return await self._give_up(
                trade,
                "abandoned",
                f"not landed after {watch.rounds} replacements at nonce {watch.nonce}",
            )
        watch.rounds += 1
        watch.since = head
        if self.route.kind != "bundle":
            await self._resubmit(trade, watch, watch.nonce, head)
        return None

    async def _give_up(self, trade: Trade, action: str, why: str) -> Trade:
        TRADES_REPLACED.labels(chain=self.name, action=action).inc()
        return await self.tracker.fail(trade, why)

    async def _resubmit(self, trade: Trade, watch: _Watch, nonce: int, head: int) -> None:
        """Replace the trade at ``nonce`` (still profitable) or cancel it (not, or a backrun)."""
        replacement: Sent | None = None
        if watch.sent is not None:
            try:
                replacement = await self.pipeline.replacement(watch.sent)
            except MevstackError as exc:  # RpcError included: cancel rather than wait
                log.warning("chain %s: re-pricing trade %s: %s", self.name, trade.id, exc)
        if replacement is not None:
            tx = tx_dict(self.context.chain_id, replacement.tx, nonce)
            action = "replaced"
        else:
            old_fee, old_tip = watch.fees or (0, 0)
            max_fee, tip = replacement_fees(old_fee, old_tip)
            base = await self.rpc.request("eth_getBlockByNumber", ["latest", False])
            floor = 2 * int(base.get("baseFeePerGas") or "0x0", 16) + tip
            tx = cancellation_tx(
                account=self.account.address,
                chain_id=self.context.chain_id,
                nonce=nonce,
                max_fee_per_gas=max(max_fee, floor),
                max_priority_fee_per_gas=tip,
            )
            action = "cancelled"
        try:
            signed = await self.submitter.signer.sign(tx)
        except (KillSwitchEngaged, LeaseLost) as exc:
            # nothing may be signed now: the trade is still watched, and this was no round
            watch.rounds -= 1
            log.warning("chain %s: trade %s not %s: %s", self.name, trade.id, action, exc)
            return
        watch.fees = (int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))
        if replacement is not None:
            watch.sent = self._sent[trade.id] = replacement
            # on the row before it can be on the wire, like the first send
            self.store.update_trade(trade.id, tx_hashes=(*trade.tx_hashes, signed.hash))
        else:
            watch.cancels.append(signed.hash)
        TRADES_REPLACED.labels(chain=self.name, action=action).inc()
        log.info(
            "chain %s: trade %s not landed within %d blocks: %s at nonce %d by %s "
            "(max fee %d, tip %d wei)",
            self.name,
            trade.id,
            self.config.resubmit_after_blocks,
            action,
            nonce,
            signed.hash,
            watch.fees[0],
            watch.fees[1],
        )
        try:
            await self.route.submit(
                [signed.raw],
                watch=signed.hash,
                target_block=head + 1,
                expires_at_block=head + self.config.resubmit_after_blocks,
            )
        except MevstackError as exc:
            # nonce taken, underpriced or no answer: the next look settles or bumps again
            log.warning("chain %s: %s of trade %s: %s", self.name, action, trade.id, exc)

    async def _reorged(self) -> bool:
        """Whether the chain changed under the head seen last (or this is the first look)."""
        latest = await self.rpc.request("eth_getBlockByNumber", ["latest", False])
        number, block_hash = int(latest["number"], 16), str(latest["hash"]).lower()
        last, self._last_head = self._last_head, (number, block_hash)
        if last is None or number < last[0]:
            return True
        if number == last[0]:
            return block_hash != last[1]
        seen = await self.rpc.request("eth_getBlockByNumber", [hex(last[0]), False])
        return not isinstance(seen, Mapping) or str(seen.get("hash")).lower() != last[1]

    async def _recount(self) -> None:
        """The in-flight count from the store; with nothing in flight, a chain whose pending
        nonce is behind ours is trusted (it came back shorter)."""
        active = self._active_count()
        self.state.set_in_flight(self.name, active)
        if active or self._lock.locked() or self.nonces.next_nonce is None:
            return
        async with self._lock:  # no execution may reserve while the nonce moves down
            if self._active_count():
                return
            if await self.nonces.pending_count() >= (self.nonces.next_nonce or 0):
                self._behind_since = None
                return
            # behind for a while, not one lagging answer; and a settled trade the shorter chain
            # dropped re-opens first (to be replaced at its nonce): only a chain that holds all
            # our settled trades is trusted
            head = await self._head()
            if self._behind_since is None or self._behind_since > head:
                self._behind_since = head
            if head - self._behind_since < self.config.resubmit_after_blocks:
                return
            if await self.tracker.recheck(0, REORG_WINDOW) or self._active_count():
                return
            self._behind_since = None
            await self.nonces.resync("chain_behind", trust_chain=True)

    def _active_count(self) -> int:
        return sum(
            len(self.store.list_trades(chain=self.name, status=s, limit=500).items)
            for s in ACTIVE_TRADE_STATUSES
        )

    async def follow_once(self) -> None:
        if await self._reorged():
            await self.tracker.recheck(self.config.confirmations, REORG_WINDOW)
        await self.settle_submitted()
        await self.tracker.refresh(self.config.confirmations)
        await self._recount()
        await refresh_native_balance(self.rpc, self.state, self.name, self.account.address)
        await refresh_executor_balance(self.rpc, self.state, self.context)
        limits = self.state.limits.get(self.name)
        if limits is not None and self.on_paused is not None:
            reason = paused_reason(limits, self.state.status(self.name))
            if reason is not None:
                await self.on_paused(self.name, reason)

    async def _follow(self) -> None:
        interval = min(max(self.config.block_time / 2, 0.2), 6.0)
        while True:
            try:
                # only the lease holder settles, so two replicas never count a trade twice
                if lease_held(self.lease):
                    await self.follow_once()
            except (RpcError, MevstackError) as exc:
                log.warning("chain %s: following trades: %s", self.name, exc)
            except Exception:
                log.exception("chain %s: following trades failed", self.name)
            await asyncio.sleep(interval)  # the follow cadence, not a synchronisation
