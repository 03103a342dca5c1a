"""Mempool backruns: apply a pending swap to a copy of pool state, then search arbitrage after it.

Pure: pool states, a decoded pending transaction (``strategy.mempool``), the expected block
timestamp and gas inputs come in; the post-trigger states and ``kind: "backrun"`` opportunities
come out.

*Applying* a trigger reproduces what the router or pool contract does, to the wei: UniswapV2Router02
(``getAmountsOut``/``getAmountsIn`` on the reserves read before its first swap, then each pair's
``swap`` with its K check; the fee-on-transfer variants quote hop by hop on the current reserves),
the V3 ``SwapRouter`` (sequential exact-input hops; exact-output hops run from the last pool back
to the first, nested in callbacks, so a pool used twice is locked) and direct pool calls.  The
caller's limits are checked as the contracts check them — deadline, ``amountOutMin``,
``amountInMax``, ``msg.value`` — and a trigger that would revert gives no backrun.  Assumed, not
checked: the sender's balance and allowance (the simulation of ``[trigger, backrun]`` before
signing catches those) and that tokens transfer exactly (the registry admits no fee-on-transfer
token).

*Ordering* (:func:`block_order`): the trigger does not meet the head state but the state after
the pending transactions a node puts in front of it.  Nodes fill a block from the sender-ordered
queues of their pool, taking at each step the best head by a price, ties going to the one seen
first; a sender's transactions come in nonce order whatever their prices.  The price depends on
the node (:data:`OrderRule`): geth's and reth's miners use the effective tip at the block's base
fee; anvil 1.7 (``--order fees``, its default) uses the fee cap (``maxFeePerGas``, or
``gasPrice``), which we measured on it.  A transaction whose fee cap is below the base fee waits,
and so do its sender's later ones.

*Searching* applies, in block order, the pending swaps ordered ahead of the trigger, then the
trigger, then those ordered between the trigger and the backrun (:func:`between_of`: a backrun
sent to a node's pool is seen after every pending transaction and pays at most its trigger's
fees, so every one ranked level with it or above lands in front of it).  Of those, only the ones
that touch the pools of interest are applied (the trigger's and the backrun's path, and,
transitively, any pool an applied swap shares with them), skipping one that would revert (it is
included reverted and moves no pool) or cannot be applied exactly; then it reuses the arbitrage
scanner restricted to the cycles through the pools the trigger changed, on that state.  Every
pool changed on the way is never used to value a profit.  An opportunity is kept only if no
other pending swap in front of it reaches its path; it names the applied swaps (``ahead_txs``
before the trigger, ``between_txs`` after it), which the pipeline simulates around the trigger.
The backrun scanner keeps its own rate table: it holds hypothetical rates for the last search's
pools, which are put back to the head state before the next search.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mevstack.errors import MevstackError
from mevstack.market.errors import MathRevert
from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.market.pools.uniswap_v3 import V3PoolState
from mevstack.market.uniswap_v2 import UINT112_MAX, get_amount_in, get_amount_out
from mevstack.market.uniswap_v3.swap import V3SwapOutcome
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.mempool import PendingSwap, SwapIntent
from mevstack.strategy.opportunity import Opportunity
from mevstack.strategy.pools import PoolModel
from mevstack.strategy.valuation import GasInputs

_FEE_DENOMINATOR = 10_000
_NAMED_CACHE = 50_000  # transactions whose pools are remembered (all forgotten past it)


class NoBackrun(MevstackError):
    """A pending transaction that gives no backrun."""


class TriggerReverts(NoBackrun):
    """The trigger would revert at the current state (the reason is the contract's)."""


class TriggerUnknown(NoBackrun):
    """The trigger cannot be applied exactly: unknown router or pool, or an unknowable input."""


@dataclass(frozen=True, slots=True)
class Venues:
    """Which routers the chain's DEXes have: a router trades on its own factory's pools."""

    wrapped_native: str
    v2_routers: Mapping[str, str] = field(default_factory=dict)  # Router02 -> V2 DEX name
    v3_routers: Mapping[str, str] = field(default_factory=dict)  # SwapRouter -> V3 DEX name

    def v2_dex(self, router: str) -> str | None:
        return _lookup(self.v2_routers, router)

    def v3_dex(self, router: str) -> str | None:
        return _lookup(self.v3_routers, router)


# Router02 and SwapRouter both expose ``factory()``: a router met in the mempool is mapped to the
# configured DEX with that factory (one eth_call at the edge, then cached in ``Venues``).
ROUTER_FACTORY_SIGNATURE = "factory()"


def learn_router(venues: Venues, router: str, factory: str, dexes: Iterable[Any]) -> Venues:
    """``venues`` plus ``router`` if its ``factory()`` is one of the configured ``dexes`` (anything
    with ``name``, ``kind`` and ``factory``, e.g. ``DexConfig``); unchanged otherwise."""
    for dex in dexes:
        if str(dex.factory).lower() != factory.lower():
            continue
        if dex.kind == "uniswap_v2":
            return replace(venues, v2_routers={**venues.v2_routers, router: dex.name})
        if dex.kind == "uniswap_v3":
            return replace(venues, v3_routers={**venues.v3_routers, router: dex.name})
    return venues


def _lookup(table: Mapping[str, str], address: str) -> str | None:
    wanted = address.lower()
    return next((v for k, v in table.items() if k.lower() == wanted), None)


class PoolDirectory:
    """Pools by address and by what a router names: (DEX, tokens) for V2, plus the fee for V3."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}  # lower-case address -> the address as states key it
        self._v2: dict[tuple[str, str, str], str] = {}
        self._v3: dict[tuple[str, str, str, int], str] = {}

    def add(self, pools: Iterable[Any]) -> None:
        """Pools or pool states (anything with address, dex, kind, token0, token1; V3: fee)."""
        for pool in pools:
            self._keys[pool.address.lower()] = pool.address
            a, b = sorted((pool.token0.lower(), pool.token1.lower()))
            if pool.kind == "uniswap_v2":
                self._v2[(pool.dex, a, b)] = pool.address
            elif pool.kind == "uniswap_v3":
                self._v3[(pool.dex, a, b, int(pool.fee))] = pool.address

    def key(self, address: str) -> str | None:
        return self._keys.get(address.lower())

    def v2_pair(self, dex: str, token_a: str, token_b: str) -> str | None:
        a, b = sorted((token_a.lower(), token_b.lower()))
        return self._v2.get((dex, a, b))

    def v3_pool(self, dex: str, token_a: str, token_b: str, fee: int) -> str | None:
        a, b = sorted((token_a.lower(), token_b.lower()))
        return self._v3.get((dex, a, b, fee))


@dataclass(frozen=True, slots=True)
class AppliedSwap:
    """One pool swap of the trigger, with the exact amounts the pool takes and gives."""

    pool: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int


@dataclass(frozen=True, slots=True)
class TriggerEffect:
    """The trigger's swaps in execution order and the post-trigger state of every pool it used."""

    states: Mapping[str, Any]
    swaps: tuple[AppliedSwap, ...]

    @property
    def changed(self) -> frozenset[str]:
        return frozenset(self.states)


class _Run:
    """The running state of one trigger: pools it touched so far, and the swaps done."""

    def __init__(self, states: Mapping[str, Any]) -> None:
        self.base = states
        self.touched: dict[str, Any] = {}
        self.swaps: list[AppliedSwap] = []

    def state(self, key: str) -> Any:
        state = self.touched.get(key)
        if state is None:
            state = self.base.get(key)
        if state is None:
            raise TriggerUnknown(f"no state for pool {key}")
        return state

    def record(self, state: Any, token_in: str, token_out: str, paid: int, got: int) -> None:
        self.touched[state.address] = state
        self.swaps.append(AppliedSwap(state.address, token_in, token_out, paid, got))


def _v2_state(state: Any) -> V2PoolState:
    if not isinstance(state, V2PoolState):
        raise TriggerUnknown(f"pool {state.address} is not a Uniswap V2 pair")
    return state


def _v3_state(state: Any) -> V3PoolState:
    if not isinstance(state, V3PoolState):
        raise TriggerUnknown(f"pool {state.address} is not a Uniswap V3 pool")
    return state


def pair_swap(
    state: V2PoolState, amount0_out: int, amount1_out: int, held0: int, held1: int
) -> V2PoolState:
    """``UniswapV2Pair.swap``: the pair holds ``held0``/``held1`` before paying out; its checks,
    then the new reserves (= balances).  The fee generalises ``1000·b − 3·in`` to basis points."""
    r0, r1 = state.reserve0, state.reserve1
    if amount0_out <= 0 and amount1_out <= 0:
        raise TriggerReverts("UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT")
    if amount0_out >= r0 or amount1_out >= r1:
        raise TriggerReverts("UniswapV2: INSUFFICIENT_LIQUIDITY")
    b0, b1 = held0 - amount0_out, held1 - amount1_out
    if b0 < 0 or b1 < 0:
        raise TriggerReverts("UniswapV2: TRANSFER_FAILED")
    in0 = b0 - (r0 - amount0_out) if b0 > r0 - amount0_out else 0
    in1 = b1 - (r1 - amount1_out) if b1 > r1 - amount1_out else 0
    if in0 <= 0 and in1 <= 0:
        raise TriggerReverts("UniswapV2: INSUFFICIENT_INPUT_AMOUNT")
    adjusted0 = b0 * _FEE_DENOMINATOR - in0 * state.fee_bps
    adjusted1 = b1 * _FEE_DENOMINATOR - in1 * state.fee_bps
    if adjusted0 * adjusted1 < r0 * r1 * _FEE_DENOMINATOR**2:
        raise TriggerReverts("UniswapV2: K")
    if b0 > UINT112_MAX or b1 > UINT112_MAX:
        raise TriggerReverts("UniswapV2: OVERFLOW")
    return replace(state, reserve0=b0, reserve1=b1)


def _v2_hop(run: _Run, key: str, token_in: str, amount_in: int, amount_out: int) -> None:
    """One router hop: ``amount_in`` arrives at the pair, which pays ``amount_out``."""
    state = _v2_state(run.state(key))
    zero_for_one = token_in.lower() == state.token0.lower()
    out0, out1 = (0, amount_out) if zero_for_one else (amount_out, 0)
    held0 = state.reserve0 + (amount_in if zero_for_one else 0)
    held1 = state.reserve1 + (0 if zero_for_one else amount_in)
    after = pair_swap(state, out0, out1, held0, held1)
    token_out = state.token1 if zero_for_one else state.token0
    run.record(after, token_in, token_out, amount_in, amount_out)


def _reserves_for(state: V2PoolState, token_in: str) -> tuple[int, int]:
    if token_in.lower() == state.token0.lower():
        return state.reserve0, state.reserve1
    return state.reserve1, state.reserve0


def _apply_v2_router(
    run: _Run, intent: SwapIntent, directory: PoolDirectory, venues: Venues, timestamp: int
) -> None:
    dex = venues.v2_dex(intent.target)
    if dex is None:
        raise TriggerUnknown(f"{intent.target} is not a known Router02")
    if intent.deadline is not None and intent.deadline < timestamp:
        raise TriggerReverts("UniswapV2Router: EXPIRED")
    tokens = [t for t in intent.tokens if t is not None]
    weth = venues.wrapped_native.lower()
    if (intent.native_in and tokens[0].lower() != weth) or (
        intent.native_out and tokens[-1].lower() != weth
    ):
        raise TriggerReverts("UniswapV2Router: INVALID_PATH")
    keys: list[str] = []
    for a, b in itertools.pairwise(tokens):
        address = directory.v2_pair(dex, a, b)
        if address is None:
            raise TriggerUnknown(f"no {dex} pair for {a}/{b}")
        keys.append(address)
    # The last pair pays the recipient (the router itself for the ETH-out variants).
    if not intent.native_out and intent.recipient.lower() in {t.lower() for t in tokens[-2:]}:
        raise TriggerReverts("UniswapV2: INVALID_TO")
    try:
        if intent.fee_on_transfer:
            # Each hop quotes on the pair's reserves as they are when it is reached.
            amount = intent.amount_in
            for key, token_in in zip(keys, tokens, strict=False):
                current = _v2_state(run.state(key))
                r_in, r_out = _reserves_for(current, token_in)
                out = get_amount_out(amount, r_in, r_out, current.fee_bps)
                _v2_hop(run, key, token_in, amount, out)
                amount = out
            if amount < intent.amount_out:
                raise TriggerReverts("UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT")
            return
        # The library reads every pair's reserves first, then the swaps run.
        pairs = [_v2_state(run.state(k)) for k in keys]
        if intent.exact_in:
            amounts = [intent.amount_in]
            for pair, token_in in zip(pairs, tokens, strict=False):
                r_in, r_out = _reserves_for(pair, token_in)
                amounts.append(get_amount_out(amounts[-1], r_in, r_out, pair.fee_bps))
            if amounts[-1] < intent.amount_out:
                raise TriggerReverts("UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT")
        else:
            amounts = [intent.amount_out]
            for pair, token_in in reversed(list(zip(pairs, tokens, strict=False))):
                r_in, r_out = _reserves_for(pair, token_in)
                amounts.insert(0, get_amount_in(amounts[0], r_in, r_out, pair.fee_bps))
            if amounts[0] > intent.amount_in:
                raise TriggerReverts("UniswapV2Router: EXCESSIVE_INPUT_AMOUNT")
    except MathRevert as exc:
        raise TriggerReverts(f"UniswapV2Library: {exc.code}") from None
    for i, key in enumerate(keys):
        _v2_hop(run, key, tokens[i], amounts[i], amounts[i + 1])


def _v3_swap(
    run: _Run, key: str, zero_for_one: bool, amount_specified: int, price_limit: int | None
) -> tuple[int, int]:
    """One pool swap on the running state; returns (amount paid in, amount received out)."""
    state = _v3_state(run.state(key))
    try:
        outcome: V3SwapOutcome = state.swap(zero_for_one, amount_specified, price_limit)
    except MathRevert as exc:
        raise TriggerReverts(f"UniswapV3Pool: {exc.code}") from None
    paid, got = (
        (outcome.amount0, -outcome.amount1) if zero_for_one else (outcome.amount1, -outcome.amount0)
    )
    after = replace(
        state,
        sqrt_price_x96=outcome.sqrt_price_x96,
        tick=outcome.tick,
        liquidity=outcome.liquidity,
    )
    token_in, token_out = (
        (state.token0, state.token1) if zero_for_one else (state.token1, state.token0)
    )
    run.record(after, token_in, token_out, paid, got)
    return paid, got


def _apply_v3_router(
    run: _Run, intent: SwapIntent, directory: PoolDirectory, venues: Venues, timestamp: int
) -> None:
    dex = venues.v3_dex(intent.target)
    if dex is None:
        raise TriggerUnknown(f"{intent.target} is not a known SwapRouter")
    if intent.deadline is not None and timestamp > intent.deadline:
        raise TriggerReverts("Transaction too old")
    legs: list[tuple[str, bool]] = []
    for hop in intent.path:
        if hop.token_in is None or hop.token_out is None or hop.fee is None:
            raise TriggerUnknown("a SwapRouter hop without tokens or fee")
        pool = directory.v3_pool(dex, hop.token_in, hop.token_out, hop.fee)
        if pool is None:
            raise TriggerUnknown(f"no {dex} pool {hop.token_in}/{hop.token_out}/{hop.fee}")
        legs.append((pool, int(hop.token_in, 16) < int(hop.token_out, 16)))
    # Only the single-pool calls take a price limit; 0 means the loosest one.
    limit = intent.sqrt_price_limit_x96 or None
    if intent.exact_in:
        amount = intent.amount_in
        for pool, zero_for_one in legs:
            _paid, amount = _v3_swap(run, pool, zero_for_one, amount, limit)
        if amount < intent.amount_out:
            raise TriggerReverts("Too little received")
        return
    amount = intent.amount_out
    used: set[str] = set()
    for pool, zero_for_one in reversed(legs):
        if pool in used:
            raise TriggerReverts("UniswapV3Pool: LOK")  # still inside its own swap's callback
        used.add(pool)
        paid, got = _v3_swap(run, pool, zero_for_one, -amount, limit)
        if limit is None and got != amount:
            raise TriggerReverts("SwapRouter: partial output")
        amount = paid
    if amount > intent.amount_in:
        raise TriggerReverts("Too much requested")


def _apply_direct(
    run: _Run,
    intent: SwapIntent,
    directory: PoolDirectory,
    v2_balances: Mapping[str, tuple[int, int]] | None,
) -> None:
    key = directory.key(intent.target)
    hop = intent.path[0]
    if key is None or hop.zero_for_one is None:
        raise TriggerUnknown(f"{intent.target} is not a known pool")
    if intent.venue == "uniswap_v3_pool":
        amount = intent.amount_in if intent.exact_in else -intent.amount_out
        _v3_swap(run, key, hop.zero_for_one, amount, intent.sqrt_price_limit_x96)
        return
    if intent.callback_data:
        raise TriggerUnknown("a flash swap pays back from a contract we cannot see into")
    held = None if v2_balances is None else v2_balances.get(key)
    if held is None:
        # What the pair receives is what was sent to it beforehand: its balances tell.
        raise TriggerUnknown(f"direct swap on {key}: the pair's token balances are needed")
    state = _v2_state(run.state(key))
    out0, out1 = (0, intent.amount_out) if hop.zero_for_one else (intent.amount_out, 0)
    after = pair_swap(state, out0, out1, held[0], held[1])
    paid = (
        (after.reserve0 - state.reserve0) if hop.zero_for_one else (after.reserve1 - state.reserve1)
    )
    token_in, token_out = (
        (state.token0, state.token1) if hop.zero_for_one else (state.token1, state.token0)
    )
    run.record(after, token_in, token_out, paid, intent.amount_out)


def apply_trigger(
    pending: PendingSwap,
    states: Mapping[str, Any],
    directory: PoolDirectory,
    venues: Venues,
    *,
    timestamp: int,
    v2_balances: Mapping[str, tuple[int, int]] | None = None,
) -> TriggerEffect:
    """The trigger's effect on ``states`` (keyed by pool address) in a block at ``timestamp``.

    Raises ``TriggerReverts`` when the contracts would revert, ``TriggerUnknown`` when the trigger
    cannot be applied exactly.  ``v2_balances`` (pair -> token balances at the head) is only read
    for direct pair swaps, whose input is whatever was sent to the pair before.
    """
    run = _Run(states)
    for intent in pending.swaps:
        if intent.venue == "uniswap_v2_router":
            _apply_v2_router(run, intent, directory, venues, timestamp)
        elif intent.venue == "uniswap_v3_router":
            _apply_v3_router(run, intent, directory, venues, timestamp)
        else:
            _apply_direct(run, intent, directory, v2_balances)
    return TriggerEffect(dict(run.touched), tuple(run.swaps))


def pools_named(pending: PendingSwap, directory: PoolDirectory, venues: Venues) -> frozenset[str]:
    """The indexed pools ``pending`` names (keyed as states are), whatever the state: routers name
    them by tokens (and fee), direct calls by address.  Pools we do not index are left out."""
    found: set[str] = set()
    for intent in pending.swaps:
        if intent.venue == "uniswap_v2_router":
            dex = venues.v2_dex(intent.target)
            tokens = [t for t in intent.tokens if t is not None]
            for a, b in itertools.pairwise(tokens):
                pair = None if dex is None else directory.v2_pair(dex, a, b)
                if pair is not None:
                    found.add(pair)
        elif intent.venue == "uniswap_v3_router":
            dex = venues.v3_dex(intent.target)
            for hop in intent.path:
                if dex is None or hop.token_in is None or hop.token_out is None or hop.fee is None:
                    continue
                pool = directory.v3_pool(dex, hop.token_in, hop.token_out, hop.fee)
                if pool is not None:
                    found.add(pool)
        else:
            key = directory.key(intent.target)
            if key is not None:
                found.add(key)
    return frozenset(found)


OrderRule = Literal["effective_tip", "fee_cap"]


def order_price(pending: PendingSwap, *, base_fee: int, rule: OrderRule) -> int | None:
    """What a node ranks ``pending`` by in a block with ``base_fee``; ``None`` when its fee cap
    is below the base fee (it cannot be included)."""
    if pending.max_fee_per_gas < base_fee:
        return None
    if rule == "fee_cap":
        return pending.max_fee_per_gas
    return min(pending.max_priority_fee_per_gas, pending.max_fee_per_gas - base_fee)


def block_order(
    arrived: Sequence[PendingSwap], *, base_fee: int, rule: OrderRule = "effective_tip"
) -> list[PendingSwap]:
    """``arrived`` (pending transactions, first seen first) in the order a node puts them in the
    next block with ``base_fee``: the best-priced sender queue head first, ties to the earlier
    seen, each sender's transactions in nonce order.  Those that cannot be included (fee cap
    below the base fee, or behind such a transaction of their sender) are left out."""
    queues: dict[str, list[tuple[int, int, PendingSwap]]] = {}
    for seen, pending in enumerate(arrived):
        queues.setdefault(pending.sender.lower(), []).append((pending.nonce, seen, pending))
    heads: list[tuple[int, int, str]] = []  # (-price, seen, sender)

    def push(sender: str) -> None:
        queue = queues[sender]
        if not queue:
            return
        _nonce, seen, pending = queue[0]
        price = order_price(pending, base_fee=base_fee, rule=rule)
        if price is not None:
            heapq.heappush(heads, (-price, seen, sender))

    for sender, queue in queues.items():
        queue.sort(key=lambda item: (item[0], item[1]))
        push(sender)
    out: list[PendingSwap] = []
    while heads:
        _price, _seen, sender = heapq.heappop(heads)
        out.append(queues[sender].pop(0)[2])
        push(sender)
    return out


def ahead_of(
    trigger: PendingSwap,
    arrived: Sequence[PendingSwap],
    *,
    base_fee: int,
    rule: OrderRule = "effective_tip",
) -> list[PendingSwap]:
    """The transactions of ``arrived`` (first seen first; the trigger among them or not, then as
    seen last) that the next block holds before ``trigger``, in that order."""
    wanted = trigger.tx_hash.lower()
    listed = [p for p in arrived if p.tx_hash.lower() != wanted]
    at = next((i for i, p in enumerate(arrived) if p.tx_hash.lower() == wanted), len(arrived))
    ordered = block_order([*listed[:at], trigger, *listed[at:]], base_fee=base_fee, rule=rule)
    position = next((i for i, p in enumerate(ordered) if p.tx_hash.lower() == wanted), None)
    return [] if position is None else ordered[:position]


def price_floor(
    ordered: Sequence[PendingSwap], *, base_fee: int, rule: OrderRule = "effective_tip"
) -> list[int]:
    """For each place of ``ordered`` (:func:`block_order`), the lowest :func:`order_price` up to
    it (-1 for one that cannot pay the base fee): what :func:`between_of` searches."""
    floor: list[int] = []
    lowest: int | None = None
    for tx in ordered:
        price = order_price(tx, base_fee=base_fee, rule=rule)
        price = -1 if price is None else price
        lowest = price if lowest is None else min(lowest, price)
        floor.append(lowest)
    return floor


def between_of(
    ordered: Sequence[PendingSwap],
    floor: Sequence[int],
    trigger_at: int,
    backrun_price: int | None,
) -> list[PendingSwap]:
    """The transactions of ``ordered`` (:func:`block_order`, with its :func:`price_floor`) that
    the node puts after the one at ``trigger_at`` but in front of a backrun sent now with
    ``backrun_price`` (:func:`order_price` of its fees, at most the trigger's).  The backrun is
    seen after every one of them and has a queue of its own, so it is taken as soon as the best
    head is priced below it: right in front of the first transaction priced below it.  ``None``
    (it cannot pay the base fee) or a backrun the node would take before its trigger gives no
    list: such a backrun does not land right behind its trigger at all."""
    if backrun_price is None:
        return []
    # floor is non-increasing: the first place priced below the backrun, by bisection
    stop = bisect.bisect_right(floor, -backrun_price, key=lambda f: -f)
    return list(ordered[trigger_at + 1 : stop]) if stop > trigger_at else []


def reaching(
    ahead: Sequence[PendingSwap], named: Sequence[frozenset[str]], pools: Iterable[str]
) -> list[int]:
    """Indexes of the ``ahead`` swaps (block order; ``named``: the lower-case pools each one
    names) that can change ``pools`` before the trigger: those naming one of them, and, going
    back, those naming a pool of a swap already kept."""
    interest = {p.lower() for p in pools}
    kept: list[int] = []
    for i in range(len(ahead) - 1, -1, -1):
        if not interest.isdisjoint(named[i]):
            kept.append(i)
            interest.update(p.lower() for p in named[i])
    return kept[::-1]


class _BackrunScanner(ArbitrageScanner):
    """The arbitrage scanner plus a way to reset rates without evaluating any cycle."""

    def sync_rates(self, states: Mapping[str, Any], addresses: list[str] | None) -> None:
        self._refresh_rates(states, addresses)


@dataclass(frozen=True, slots=True)
class BackrunResult:
    """What one trigger gave: opportunities (best first), its effect, or why there is none."""

    opportunities: list[Opportunity]
    effect: TriggerEffect | None
    reason: str | None = None


class BackrunSearch:
    """Backruns for one chain: pools are added once; ``on_block`` marks what changed at the head."""

    def __init__(
        self, terms: ChainTerms, venues: Venues, models: Mapping[str, PoolModel] | None = None
    ) -> None:
        self.venues = venues
        self.directory = PoolDirectory()
        self._scanner = _BackrunScanner(terms, models)
        self._stale: set[str] | None = None  # pools whose screen rates lag the head; None: all
        self._named: dict[str, tuple[Venues, frozenset[str]]] = {}  # tx hash -> pools it names

    def add_pools(self, pools: Iterable[Any]) -> int:
        """Index newly discovered pools; returns how many new cycles they complete."""
        listed = list(pools)
        self.directory.add(listed)
        return self._scanner.add_pools(listed)

    def pools_of(self, pending: PendingSwap) -> frozenset[str]:
        """:func:`pools_named`, lower-cased, remembered per transaction while the routers known
        stay the same (a mempool's swaps are looked at again at every head)."""
        key = pending.tx_hash.lower()
        cached = self._named.get(key)
        if cached is not None and cached[0] is self.venues:
            return cached[1]
        if len(self._named) >= _NAMED_CACHE:
            self._named.clear()
        pools = frozenset(p.lower() for p in pools_named(pending, self.directory, self.venues))
        self._named[key] = (self.venues, pools)
        return pools

    def on_block(self, changed: Iterable[str] | None) -> None:
        """The head moved: ``changed`` pools (``None``: all, e.g. after a rollback) changed."""
        if changed is None or self._stale is None:
            self._stale = None
        else:
            self._stale.update(changed)

    def search(
        self,
        pending: PendingSwap,
        states: Mapping[str, Any],
        *,
        block_number: int,
        timestamp: int,
        gas: GasInputs,
        detected_at: str,
        blocked_tokens: frozenset[str] = frozenset(),
        v2_balances: Mapping[str, tuple[int, int]] | None = None,
        ahead: Sequence[PendingSwap] = (),
        between: Sequence[PendingSwap] = (),
    ) -> BackrunResult:
        """Backruns of ``pending`` on the head ``states`` (stamped ``block_number``), in a next
        block at ``timestamp``, behind the ``ahead`` swaps (:func:`ahead_of`, in block order),
        the trigger, then the ``between`` swaps (:func:`between_of`: those the node puts after
        the trigger but still in front of the backrun).  Opportunities carry ``block_number``,
        the swaps applied (``ahead_txs``, ``between_txs``) and amounts on the state after all of
        them (see the module docstring)."""
        prefix = [*ahead, pending, *between]
        at = len(ahead)  # the trigger's place in the prefix
        named = [self.pools_of(p) for p in prefix]
        seeds = set(named[at])
        scanner = self._scanner
        effect: TriggerEffect | None = None
        # The pools of interest start as the trigger's; when the best path found also crosses a
        # pool that other pending swaps reach, it is priced again with those applied (at most
        # three rounds; then only the paths priced on everything that reaches them are kept).
        for rounds_left in (2, 1, 0):
            last = rounds_left == 0
            kept = sorted({*reaching(prefix, named, seeds), at})
            overlay: dict[str, Any] = {}
            applied: list[int] = []
            for i in kept:
                try:
                    moved = apply_trigger(
                        prefix[i],
                        _Over(overlay, states),
                        self.directory,
                        self.venues,
                        timestamp=timestamp,
                        v2_balances=_untouched(v2_balances, overlay),
                    )
                except NoBackrun as exc:
                    if i == at:
                        return BackrunResult([], None, str(exc))
                    continue  # reverted (moves no pool) or beyond exact modelling
                if i == at:
                    effect = moved
                else:
                    applied.append(i)
                overlay.update(moved.states)
            assert effect is not None  # the trigger is always applied (or returned above)
            changed = effect.changed
            moved_all = frozenset(overlay) | changed
            # read through to ``states`` in any address case, as the scanner's index may differ
            post = _Over(overlay, states)
            scanner.sync_rates(states, None if self._stale is None else sorted(self._stale))
            scanner.sync_rates(post, sorted(moved_all - changed))
            found = scanner.scan(
                post,
                block_number=block_number,
                gas=gas,
                detected_at=detected_at,
                changed=sorted(changed),
                kind="backrun",
                trigger_tx=pending.tx_hash,
                untouchable=moved_all,
                blocked_tokens=blocked_tokens,
            )
            self._stale = set(moved_all)  # their rates now describe the hypothetical state
            covered = set(kept)
            before = tuple(prefix[i].tx_hash.lower() for i in applied if i < at)
            after = tuple(prefix[i].tx_hash.lower() for i in applied if i > at)
            exact = [
                replace(o, ahead_txs=before, between_txs=after)
                for o in found
                if set(reaching(prefix, named, seeds | {h.pool.lower() for h in o.path})) <= covered
            ]
            if not found or (exact and exact[0].id == found[0].id) or last:
                reason = None if exact or not found else "other pending swaps reach every path"
                return BackrunResult(exact, effect, reason)
            # the best path was not priced on all that reaches it: price it again with it
            seeds |= {h.pool.lower() for h in found[0].path}
        raise AssertionError("unreachable: the last round returns")


class _Over(Mapping[str, Any]):
    """``top`` over ``base``, read-only, in any address case (``base`` keeps its own rules)."""

    def __init__(self, top: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        self._top = {k.lower(): v for k, v in top.items()}
        self._base = base

    def __getitem__(self, key: str) -> Any:
        state = self._top.get(key.lower())
        return self._base[key] if state is None else state

    def __iter__(self) -> Iterator[str]:
        listed = {k.lower(): k for k in self._base}
        return iter([*listed.values(), *(k for k in self._top if k not in listed)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _untouched(
    balances: Mapping[str, tuple[int, int]] | None, overlay: Mapping[str, Any]
) -> Mapping[str, tuple[int, int]] | None:
    """Head token balances of the pairs no earlier swap moved (a moved pair's are unknown)."""
    if balances is None or not overlay:
        return balances
    moved = {k.lower() for k in overlay}
    return {k: v for k, v in balances.items() if k.lower() not in moved}


WithdrawReason = Literal["replaced", "dropped", "mined", "gone"]


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Backrun opportunities to withdraw, and why: their trigger was replaced (same sender and
    nonce, another hash), dropped from the mempool, mined, or the path no longer pays."""

    trigger_tx: str
    reason: WithdrawReason
    opportunity_ids: tuple[str, ...]


@dataclass(slots=True)
class _Tracked:
    sender: str
    nonce: int
    tx_hash: str
    ids: tuple[str, ...]


class BackrunBook:
    """Pending triggers by (sender, nonce) and by hash, with the backruns published for each."""

    def __init__(self) -> None:
        self._by_slot: dict[tuple[str, int], _Tracked] = {}
        self._by_hash: dict[str, _Tracked] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return isinstance(tx_hash, str) and tx_hash.lower() in self._by_hash

    def opportunities(self, tx_hash: str) -> tuple[str, ...]:
        tracked = self._by_hash.get(tx_hash.lower())
        return () if tracked is None else tracked.ids

    def track(
        self, sender: str, nonce: int, tx_hash: str, opportunity_ids: Iterable[str]
    ) -> list[Withdrawal]:
        """Record the backruns found for a pending trigger.  Withdraws the backruns of a tx it
        replaces (same sender and nonce) and, for a trigger seen before, ids no longer found."""
        slot = (sender.lower(), nonce)
        tx_hash = tx_hash.lower()
        ids = tuple(dict.fromkeys(opportunity_ids))
        out: list[Withdrawal] = []
        old = self._by_slot.get(slot)
        if old is not None and old.tx_hash != tx_hash:
            out.append(self._remove(old, "replaced"))
        elif old is not None:
            gone = tuple(i for i in old.ids if i not in ids)
            if gone:
                out.append(Withdrawal(tx_hash, "gone", gone))
        tracked = _Tracked(slot[0], nonce, tx_hash, ids)
        self._by_slot[slot] = tracked
        self._by_hash[tx_hash] = tracked
        return out

    def mined(self, sender: str, nonce: int, tx_hash: str) -> list[Withdrawal]:
        """A transaction of ``sender`` with ``nonce`` was mined: whichever trigger held that slot
        is finished (it was mined itself, or replaced by the one that was)."""
        tracked = self._by_slot.get((sender.lower(), nonce))
        if tracked is None:
            return []
        reason: WithdrawReason = "mined" if tracked.tx_hash == tx_hash.lower() else "replaced"
        return [self._remove(tracked, reason)]

    def dropped(self, tx_hash: str) -> list[Withdrawal]:
        """The node no longer has the trigger and it was not mined."""
        tracked = self._by_hash.get(tx_hash.lower())
        return [] if tracked is None else [self._remove(tracked, "dropped")]

    def retain(self, pending_hashes: Iterable[str]) -> list[Withdrawal]:
        """Keep only the triggers still pending (e.g. after reading ``txpool_content``)."""
        keep = {h.lower() for h in pending_hashes}
        return [
            self._remove(t, "dropped")
            for t in list(self._by_hash.values())
            if t.tx_hash not in keep
        ]

    def _remove(self, tracked: _Tracked, reason: WithdrawReason) -> Withdrawal:
        self._by_hash.pop(tracked.tx_hash, None)
        if self._by_slot.get((tracked.sender, tracked.nonce)) is tracked:
            del self._by_slot[(tracked.sender, tracked.nonce)]
        return Withdrawal(tracked.tx_hash, reason, tracked.ids)
