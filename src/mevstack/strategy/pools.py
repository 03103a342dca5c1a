"""The strategy's view of pool state: the few things it reads from a pool, per DEX kind.

Pool states themselves belong to ``mevstack.market`` (frozen dataclasses stamped with their
block).  A strategy needs, for a pool state and a direction, only: an exact integer quote (with
the number of initialised ticks it crosses), a float marginal rate for the screen, the swap curve
as an exact Möbius map when one exists (the closed-form sizing), a gas figure per hop, and how
deep the pool is in a given token (to pick the valuation pool).  ``PoolModel`` is that contract;
``V2Model`` implements it for constant-product pools from reserves and the fee.  Other kinds plug
in by registering a model for their ``kind`` string.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from mevstack.execution.encode import EXECUTE_TX_BASE_GAS
from mevstack.market.errors import MathRevert
from mevstack.market.pools import uniswap_v2, uniswap_v3
from mevstack.market.uniswap_v3.full_math import INT256_MAX, mul_div_rounding_up
from mevstack.market.uniswap_v3.liquidity_math import add_delta
from mevstack.market.uniswap_v3.sqrt_price_math import (
    get_amount0_delta,
    get_amount1_delta,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
)
from mevstack.market.uniswap_v3.swap import V3SwapOutcome, default_price_limit, simulate_swap
from mevstack.market.uniswap_v3.swap_math import compute_swap_step
from mevstack.market.uniswap_v3.tick_bitmap import next_initialized_tick_within_one_word
from mevstack.market.uniswap_v3.tick_math import MAX_TICK, MIN_TICK, get_sqrt_ratio_at_tick

# TickMath.getSqrtRatioAtTick is a pure function of the tick and the same few ticks around each
# pool's price are asked for at every quote: remembering them saves a microsecond a quote.
_sqrt_at_tick = functools.lru_cache(maxsize=16_384)(get_sqrt_ratio_at_tick)

# Gas per hop when a state carries no ``gas_estimate`` of its own (market states do): the same
# measured figures the market's pool kinds own, never other numbers (gas is an estimate until a
# trade is included).
V2_HOP_GAS = uniswap_v2.GAS_PER_HOP
V3_HOP_GAS = uniswap_v3.GAS_BASE
V3_TICK_GAS = uniswap_v3.GAS_PER_TICK
# The executor transaction's own gas beyond its hops (intrinsic cost, calldata, contract work).
TX_BASE_GAS = EXECUTE_TX_BASE_GAS

FEE_DENOMINATOR_BPS = 10_000


@runtime_checkable
class PoolKeyLike(Protocol):
    """What the cycle index needs to know about a pool: its tokens, address, DEX name and kind."""

    @property
    def address(self) -> str: ...
    @property
    def token0(self) -> str: ...
    @property
    def token1(self) -> str: ...
    @property
    def dex(self) -> str: ...
    @property
    def kind(self) -> str: ...


class HopQuote(NamedTuple):
    """One exact swap: what comes out, and how many initialised ticks the swap crosses."""

    amount_out: int
    ticks_crossed: int = 0


class Mobius(NamedTuple):
    """The swap curve ``x -> a·x / (b + c·x)`` over every input (real-valued).

    ``exact``: ``floor(a·x / (b + c·x))`` is exactly the contract's output (V2 pairs).
    """

    a: int
    b: int
    c: int
    exact: bool = False


class Segment(NamedTuple):
    """One piece of a swap curve, in floats (to locate an optimum, never to report an amount).

    From input ``start_in`` (output ``start_out``) up to ``start_in + width`` the output is
    ``start_out + a·u / (b + c·u)`` with ``u`` the input beyond ``start_in``; ``ticks`` is how
    many initialised ticks a swap reaching this piece has crossed.
    """

    start_in: float
    start_out: float
    a: float
    b: float
    c: float
    width: float
    ticks: int


class Bound(NamedTuple):
    """A Möbius map no exact output exceeds, for inputs below ``reach`` (``None``: all)."""

    curve: Mobius
    reach: int | None


Trader = Callable[[int], tuple[int, int, int] | None]
"""``amount > 0``: exact input, ``-amount``: exact output; returns ``(paid, received, ticks
crossed)`` exactly as ``quote``/``amount_in_for`` would (``None``: no fill)."""


class PoolModel(Protocol):
    """Exact and approximate views of one DEX kind's pool state, for one swap direction."""

    def quote(self, state: Any, zero_for_one: bool, amount_in: int) -> HopQuote | None:
        """Exact output for ``amount_in`` (``None`` when the pool cannot fill it)."""
        ...

    def amount_in_for(self, state: Any, zero_for_one: bool, amount_out: int) -> int | None:
        """Smallest input whose exact output is at least ``amount_out`` (``None``: none is)."""
        ...

    def rate(self, state: Any, zero_for_one: bool) -> float:
        """Marginal output per unit of input after the fee, at zero size (0.0 when empty)."""
        ...

    def mobius(self, state: Any, zero_for_one: bool) -> Mobius | None:
        """The whole swap curve as one exact-integer Möbius map, when it is one (V2)."""
        ...

    def hop_gas(self, state: Any, ticks_crossed: int) -> int:
        """Estimated gas of one swap through this pool."""
        ...

    def segments(self, state: Any, zero_for_one: bool) -> Iterator[Segment]:
        """The swap curve piece by piece, from the current state outwards (lazily)."""
        ...

    def depth(self, state: Any, token: str) -> int:
        """How much of ``token`` the pool holds (reserves, or virtual reserves at the price)."""
        ...

    def trader(self, state: Any, zero_for_one: bool) -> Trader:
        """``quote``/``amount_in_for`` on one state with the per-state work done once."""
        ...

    def bound(self, state: Any, zero_for_one: bool) -> Bound | None:
        """The real swap curve from the current state, as far as it is one Möbius map."""
        ...


class V2State(Protocol):
    """A constant-product pool state: reserves and the fee in basis points."""

    @property
    def reserve0(self) -> int: ...
    @property
    def reserve1(self) -> int: ...
    @property
    def fee_bps(self) -> int: ...
    @property
    def token0(self) -> str: ...


class V2Model:
    """Uniswap V2 (and forks): ``out = x·γ·R_out // (R_in·D + x·γ)`` with ``γ = D − fee``.

    With ``D = 10_000`` and a 30 bps fee this is exactly the pair's ``997/1000`` rule: numerator
    and denominator are both scaled by ten, so every floor is the same.
    """

    def quote(self, state: V2State, zero_for_one: bool, amount_in: int) -> HopQuote | None:
        r_in, r_out = _reserves(state, zero_for_one)
        if amount_in <= 0 or r_in <= 0 or r_out <= 0:
            return None
        gamma = FEE_DENOMINATOR_BPS - state.fee_bps
        with_fee = amount_in * gamma
        out = with_fee * r_out // (r_in * FEE_DENOMINATOR_BPS + with_fee)
        return HopQuote(out, 0) if out > 0 else None

    def amount_in_for(self, state: V2State, zero_for_one: bool, amount_out: int) -> int | None:
        r_in, r_out = _reserves(state, zero_for_one)
        if amount_out <= 0:
            return 0
        if amount_out >= r_out or r_in <= 0:
            return None
        gamma = FEE_DENOMINATOR_BPS - state.fee_bps
        # out(x) >= y  <=>  x·γ·(R_out − y) >= y·D·R_in  (see quote): the least such integer x.
        num = amount_out * FEE_DENOMINATOR_BPS * r_in
        den = gamma * (r_out - amount_out)
        return -(-num // den)

    def rate(self, state: V2State, zero_for_one: bool) -> float:
        r_in, r_out = _reserves(state, zero_for_one)
        if r_in <= 0 or r_out <= 0:
            return 0.0
        gamma = FEE_DENOMINATOR_BPS - state.fee_bps
        return (r_out / r_in) * (gamma / FEE_DENOMINATOR_BPS)

    def mobius(self, state: V2State, zero_for_one: bool) -> Mobius | None:
        # (reserves read inline: this runs for every leg of every sized cycle)
        if zero_for_one:
            r_in, r_out = state.reserve0, state.reserve1
        else:
            r_in, r_out = state.reserve1, state.reserve0
        if r_in <= 0 or r_out <= 0:
            return None
        gamma = FEE_DENOMINATOR_BPS - state.fee_bps
        # tuple.__new__ directly: a named tuple's own __new__ is a Python frame, and this runs
        # for every leg of every cycle sized
        return tuple.__new__(Mobius, (gamma * r_out, FEE_DENOMINATOR_BPS * r_in, gamma, True))

    def hop_gas(self, state: V2State, ticks_crossed: int) -> int:
        return _state_gas(state, ticks_crossed, V2_HOP_GAS)

    def segments(self, state: V2State, zero_for_one: bool) -> Iterator[Segment]:
        r_in, r_out = _reserves(state, zero_for_one)
        if r_in > 0 and r_out > 0:
            gamma = (FEE_DENOMINATOR_BPS - state.fee_bps) / FEE_DENOMINATOR_BPS
            yield Segment(0.0, 0.0, float(r_out) * gamma, float(r_in), gamma, math.inf, 0)

    def depth(self, state: V2State, token: str) -> int:
        return state.reserve0 if token == state.token0 else state.reserve1

    def bound(self, state: V2State, zero_for_one: bool) -> Bound | None:
        curve = self.mobius(state, zero_for_one)
        return None if curve is None else Bound(curve, None)

    def trader(self, state: V2State, zero_for_one: bool) -> Trader:
        r_in, r_out = _reserves(state, zero_for_one)
        gamma = FEE_DENOMINATOR_BPS - state.fee_bps
        scaled_in = r_in * FEE_DENOMINATOR_BPS

        def trade(amount: int) -> tuple[int, int, int] | None:
            if r_in <= 0 or r_out <= 0 or amount == 0:
                return None
            if amount > 0:
                out = amount * gamma * r_out // (scaled_in + amount * gamma)
                return (amount, out, 0) if out > 0 else None
            if -amount >= r_out:
                return None
            return -(amount * scaled_in // (gamma * (r_out + amount))), -amount, 0

        return trade


class V3State(Protocol):
    """A concentrated-liquidity pool state, as ``market.uniswap_v3.swap.simulate_swap`` reads it."""

    @property
    def token0(self) -> str: ...
    @property
    def sqrt_price_x96(self) -> int: ...
    @property
    def tick(self) -> int: ...
    @property
    def liquidity(self) -> int: ...
    @property
    def fee(self) -> int: ...
    @property
    def tick_spacing(self) -> int: ...
    @property
    def bitmap(self) -> Mapping[int, int]: ...
    @property
    def liquidity_net(self) -> Mapping[int, int]: ...


_Q96 = 1 << 96
_FEE_PIPS = 1_000_000
_MAX_WORDS_SEARCHED = 64
_MAX_SEGMENTS = 64


class V3Model:
    """Uniswap V3: exact quotes from the pool's own swap loop; within the current initialised
    range the curve is the constant-product one of the virtual reserves ``L/√P`` and ``L·√P``.
    """

    def quote(self, state: V3State, zero_for_one: bool, amount_in: int) -> HopQuote | None:
        if amount_in <= 0 or state.sqrt_price_x96 == 0:
            return None
        step = _in_range_step(state, zero_for_one, amount_in)
        if step is not None:
            return HopQuote(step[1], 0) if step[1] > 0 else None
        try:
            outcome = _simulate(state, zero_for_one, amount_in)
        except MathRevert:
            return None
        used, out = (
            (outcome.amount0, -outcome.amount1)
            if zero_for_one
            else (outcome.amount1, -outcome.amount0)
        )
        # A swap that runs out of liquidity takes less than it was given: not a fill.
        if used != amount_in or out <= 0:
            return None
        return HopQuote(out, outcome.initialized_ticks_crossed)

    def amount_in_for(self, state: V3State, zero_for_one: bool, amount_out: int) -> int | None:
        if amount_out <= 0:
            return 0
        step = _in_range_step(state, zero_for_one, -amount_out)
        if step is not None:
            return step[0]
        try:
            outcome = _simulate(state, zero_for_one, -amount_out)
        except MathRevert:
            return None
        got, paid = (
            (-outcome.amount1, outcome.amount0)
            if zero_for_one
            else (-outcome.amount0, outcome.amount1)
        )
        return paid if got >= amount_out else None

    def rate(self, state: V3State, zero_for_one: bool) -> float:
        if state.liquidity <= 0 or state.sqrt_price_x96 <= 0:
            return 0.0
        price = (state.sqrt_price_x96 / _Q96) ** 2  # token1 per token0
        after_fee = (_FEE_PIPS - state.fee) / _FEE_PIPS
        return (price if zero_for_one else 1.0 / price) * after_fee

    def mobius(self, state: V3State, zero_for_one: bool) -> Mobius | None:
        return None  # piecewise: see ``segments``

    def hop_gas(self, state: V3State, ticks_crossed: int) -> int:
        return _state_gas(state, ticks_crossed, V3_HOP_GAS + V3_TICK_GAS * ticks_crossed)

    def segments(self, state: V3State, zero_for_one: bool) -> Iterator[Segment]:
        """Initialised range by initialised range: virtual reserves ``L/√P`` and ``L·√P``."""
        if state.sqrt_price_x96 <= 0:
            return
        g = (_FEE_PIPS - state.fee) / _FEE_PIPS
        price = state.sqrt_price_x96 / _Q96
        liquidity = state.liquidity
        tick = state.tick
        spent = got = 0.0
        crossed = 0
        for _ in range(_MAX_SEGMENTS):
            boundary = _next_initialized_from(state, tick, zero_for_one)
            nxt = _sqrt_at_tick(boundary) / _Q96
            if liquidity > 0:
                L = float(liquidity)
                if zero_for_one:
                    width = L * (1.0 / nxt - 1.0 / price) / g
                    gain = L * (price - nxt)
                    yield Segment(spent, got, L * price * g, L / price, g, width, crossed)
                else:
                    width = L * (nxt - price) / g
                    gain = L * (1.0 / price - 1.0 / nxt)
                    yield Segment(spent, got, L / price * g, L * price, g, width, crossed)
                spent += max(width, 0.0)
                got += max(gain, 0.0)
            if boundary <= MIN_TICK or boundary >= MAX_TICK:
                return
            if boundary in state.liquidity_net:
                net = state.liquidity_net[boundary]
                liquidity += -net if zero_for_one else net
                crossed += 1
            price = nxt
            tick = boundary - 1 if zero_for_one else boundary

    def bound(self, state: V3State, zero_for_one: bool) -> Bound | None:
        """The current range's curve on the virtual reserves ``L/√P`` and ``L·√P``, exact.

        Every rounding of the pool (fee, next price, amount out) favours the pool, so no exact
        output exceeds it; ``reach`` is the real input (fee included) that moves the price to
        the next initialised tick, rounded down: below it no swap leaves the range.
        """
        price, liquidity = state.sqrt_price_x96, state.liquidity
        if price <= 0 or liquidity <= 0:
            return None
        g = _FEE_PIPS - state.fee
        boundary = _sqrt_at_tick(_next_initialized_from(state, state.tick, zero_for_one))
        if zero_for_one:
            # out = L·√P·(y·g)/(L/√P·Q96² + y·g·√P·Q96)-ish, scaled to integers:
            curve = Mobius(
                liquidity * price * price * g, _Q96 * _Q96 * liquidity * _FEE_PIPS, _Q96 * g * price
            )
            net_reach = liquidity * _Q96 * (price - boundary) // (price * boundary)
        else:
            curve = Mobius(
                liquidity * _Q96 * _Q96 * g, price * price * liquidity * _FEE_PIPS, price * g * _Q96
            )
            net_reach = liquidity * (boundary - price) // _Q96
        return Bound(curve, max(0, net_reach) * _FEE_PIPS // g)

    def trader(self, state: V3State, zero_for_one: bool) -> Trader:
        """The pool's swap loop with every full step remembered (``_SwapSteps``): a swap
        costs the final, partial step's arithmetic only; anything unusual goes through the
        full simulation."""
        walk = _SwapSteps(state, zero_for_one)

        def trade(amount: int) -> tuple[int, int, int] | None:
            if amount == 0 or state.sqrt_price_x96 == 0:
                return None
            try:
                done = walk.trade(amount)
            except (MathRevert, _AskSimulation):
                pass
            else:
                return None if done is None or done[1] <= 0 else done
            if amount > 0:
                quote = self.quote(state, zero_for_one, amount)
                return None if quote is None else (amount, quote.amount_out, quote.ticks_crossed)
            try:
                outcome = _simulate(state, zero_for_one, amount)
            except MathRevert:
                return None
            got, paid = (
                (-outcome.amount1, outcome.amount0)
                if zero_for_one
                else (-outcome.amount0, outcome.amount1)
            )
            return (paid, -amount, outcome.initialized_ticks_crossed) if got >= -amount else None

        return trade

    def depth(self, state: V3State, token: str) -> int:
        if state.sqrt_price_x96 <= 0:
            return 0
        if token == state.token0:
            return state.liquidity * _Q96 // state.sqrt_price_x96
        return state.liquidity * state.sqrt_price_x96 // _Q96


def _simulate(state: V3State, zero_for_one: bool, amount: int) -> V3SwapOutcome:
    return simulate_swap(
        sqrt_price_x96=state.sqrt_price_x96,
        tick=state.tick,
        liquidity=state.liquidity,
        fee=state.fee,
        tick_spacing=state.tick_spacing,
        bitmap=state.bitmap,
        liquidity_net=state.liquidity_net,
        zero_for_one=zero_for_one,
        amount_specified=amount,
    )


class _Step(NamedTuple):
    """One step of the swap loop: where it starts, what the steps before it paid and got,
    and what it pays and gets when it runs to its target (then the swap goes on)."""

    paid_before: int
    got_before: int
    price: int
    liquidity: int
    target: int
    in_to_target: int
    out_to_target: int
    paid_full: int
    crossed_before: int
    last: bool  # its target is the price limit: a swap that gets there is not filled


_MAX_WALK_STEPS = 64


class _AskSimulation(Exception):
    """A case the step walk leaves to ``simulate_swap`` (rounding onto a target, too long)."""


class _SwapSteps:
    """``simulate_swap`` for many amounts on one state.  A step that reaches its target pays
    and gets the same whatever the amount (``computeSwapStep`` rounds the amount to the target
    and the fee on it, independently of what remains), so the full steps are computed once, in
    order, and each amount walks them to its final step, which alone depends on the amount."""

    def __init__(self, state: V3State, zero_for_one: bool) -> None:
        self.state = state
        self.zero_for_one = zero_for_one
        self.less_fee = _FEE_PIPS - state.fee
        self.limit = default_price_limit(zero_for_one)
        self.steps: list[_Step] = []
        self._words: list[int] | None = None  # initialised words, sorted (built when needed)
        # where the next step to compute starts: paid, got, price, liquidity, tick, crossed
        self.end: tuple[int, int, int, int, int, int] | None = (
            0,
            0,
            state.sqrt_price_x96,
            state.liquidity,
            state.tick,
            0,
        )

    def step(self, k: int) -> _Step:
        while len(self.steps) <= k:
            if self.end is None or len(self.steps) >= _MAX_WALK_STEPS:
                raise _AskSimulation
            self.steps.append(self._next())
        return self.steps[k]

    def _next(self) -> _Step:
        assert self.end is not None
        paid, got, price, liquidity, tick, crossed = self.end
        state, zero_for_one, limit = self.state, self.zero_for_one, self.limit
        if (limit >= price) if zero_for_one else (limit <= price):
            raise MathRevert("SPL", "at the price limit")
        tick_next, initialized = next_initialized_tick_within_one_word(
            state.bitmap, tick, state.tick_spacing, zero_for_one
        )
        if not initialized and liquidity == 0:
            # Without liquidity every step pays, gets and crosses nothing until an initialised
            # tick: the pool's word-by-word steps up to it are skipped as one, same result.
            tick_next, initialized = self._next_initialized_beyond(tick_next)
        tick_next = max(MIN_TICK, min(MAX_TICK, tick_next))
        price_next = _sqrt_at_tick(tick_next)
        beyond = (price_next < limit) if zero_for_one else (price_next > limit)
        target = limit if beyond else price_next
        if zero_for_one:
            in_full = get_amount0_delta(target, price, liquidity, True)
            out_full = get_amount1_delta(target, price, liquidity, False)
        else:
            in_full = get_amount1_delta(price, target, liquidity, True)
            out_full = get_amount0_delta(price, target, liquidity, False)
        paid_full = in_full + mul_div_rounding_up(in_full, state.fee, self.less_fee)
        step = _Step(
            paid,
            got,
            price,
            liquidity,
            target,
            in_full,
            out_full,
            paid_full,
            crossed,
            target == limit,
        )
        if target == limit:
            self.end = None
        else:
            if initialized:
                net = state.liquidity_net.get(tick_next, 0)
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
                crossed += 1
            tick = tick_next - 1 if zero_for_one else tick_next
            self.end = (paid + paid_full, got + out_full, target, liquidity, tick, crossed)
        return step

    def _next_initialized_beyond(self, word_edge: int) -> tuple[int, bool]:
        """The first initialised tick past the word ending at ``word_edge`` in the swap's
        direction (``(MIN_TICK or MAX_TICK, False)`` when there is none)."""
        if self._words is None:
            self._words = sorted(w for w, bits in self.state.bitmap.items() if bits)
        words, spacing = self._words, self.state.tick_spacing
        word = (word_edge // spacing) >> 8
        if self.zero_for_one:
            i = bisect.bisect_left(words, word) - 1
            if i < 0:
                return MIN_TICK, False
            bits = self.state.bitmap[words[i]]
            return ((words[i] << 8) + bits.bit_length() - 1) * spacing, True
        i = bisect.bisect_right(words, word)
        if i >= len(words):
            return MAX_TICK, False
        bits = self.state.bitmap[words[i]]
        return ((words[i] << 8) + (bits & -bits).bit_length() - 1) * spacing, True

    def trade(self, amount: int) -> tuple[int, int, int] | None:
        """``(paid, received)``; ``None``: not filled (raises ``_AskSimulation`` when unsure)."""
        if amount > INT256_MAX or -amount > INT256_MAX:
            raise _AskSimulation
        zero_for_one, less_fee = self.zero_for_one, self.less_fee
        for k in range(_MAX_WALK_STEPS):
            step = self.step(k)
            price, liquidity = step.price, step.liquidity
            if amount > 0:
                rest = amount - step.paid_before
                if rest == 0:
                    return amount, step.got_before, step.crossed_before
                net = rest * less_fee // _FEE_PIPS
                if net >= step.in_to_target:
                    if step.last:
                        return None
                    continue
                nxt = get_next_sqrt_price_from_input(price, liquidity, net, zero_for_one)
                if nxt == step.target:
                    raise _AskSimulation
                if zero_for_one:
                    out = get_amount1_delta(nxt, price, liquidity, False)
                else:
                    out = get_amount0_delta(price, nxt, liquidity, False)
                return amount, step.got_before + out, step.crossed_before
            rest = -amount - step.got_before
            if rest == 0:
                return step.paid_before, -amount, step.crossed_before
            if rest >= step.out_to_target:
                if step.last:
                    return None
                continue
            nxt = get_next_sqrt_price_from_output(price, liquidity, rest, zero_for_one)
            if nxt == step.target:
                raise _AskSimulation
            if zero_for_one:
                paid = get_amount0_delta(nxt, price, liquidity, True)
                got = get_amount1_delta(nxt, price, liquidity, False)
            else:
                paid = get_amount1_delta(price, nxt, liquidity, True)
                got = get_amount0_delta(price, nxt, liquidity, False)
            if got < rest:
                raise _AskSimulation
            fee = mul_div_rounding_up(paid, self.state.fee, less_fee)
            return step.paid_before + paid + fee, -amount, step.crossed_before
        raise _AskSimulation


def _in_range_step(state: V3State, zero_for_one: bool, amount: int) -> tuple[int, int] | None:
    """``(paid, received)`` of a swap that ends inside the current initialised range.

    Such a swap is the pool's first ``computeSwapStep`` alone (the amount runs out before the
    step's target), so this is ``simulate_swap``'s own arithmetic without the final tick
    lookup a quote does not need.  ``None`` when the swap reaches the step's target (or the
    inputs are out of the contract's range): the full simulation decides then.
    """
    target = _step_target(state, zero_for_one)
    return None if target is None else _step(state, target, amount)


def _step_target(state: V3State, zero_for_one: bool) -> int | None:
    """The price the pool's first swap step aims at (``None``: leave it to the simulation)."""
    price = state.sqrt_price_x96
    if state.liquidity <= 0 or price <= 0:
        return None
    limit = default_price_limit(zero_for_one)
    if (limit >= price) if zero_for_one else (limit <= price):
        return None
    tick_next, _ = next_initialized_tick_within_one_word(
        state.bitmap, state.tick, state.tick_spacing, zero_for_one
    )
    price_next = _sqrt_at_tick(max(MIN_TICK, min(MAX_TICK, tick_next)))
    if (price_next < limit) if zero_for_one else (price_next > limit):
        return None
    return price_next


def _step(state: V3State, target: int, amount: int) -> tuple[int, int] | None:
    if amount > INT256_MAX or -amount > INT256_MAX:
        return None
    try:
        new_price, paid, received, fee = compute_swap_step(
            state.sqrt_price_x96, target, state.liquidity, amount, state.fee
        )
    except MathRevert:
        return None
    if new_price == target:
        return None
    settled = paid + fee if amount > 0 else received
    if settled != abs(amount):
        return None
    return paid + fee, received


def _next_initialized_from(state: V3State, tick: int, zero_for_one: bool) -> int:
    for _ in range(_MAX_WORDS_SEARCHED):
        found, initialized = next_initialized_tick_within_one_word(
            state.bitmap, tick, state.tick_spacing, zero_for_one
        )
        if initialized or found <= MIN_TICK or found >= MAX_TICK:
            return max(MIN_TICK, min(MAX_TICK, found))
        tick = found - 1 if zero_for_one else found
    # The Möbius curve holds at least this far; beyond it the search takes over.
    return max(MIN_TICK, min(MAX_TICK, tick))


def _state_gas(state: object, ticks_crossed: int, fallback: int) -> int:
    """The market state's own gas figure when it has one (``PoolState.gas_estimate``)."""
    estimate = getattr(state, "gas_estimate", None)
    return int(estimate(ticks_crossed)) if callable(estimate) else fallback


def _reserves(state: V2State, zero_for_one: bool) -> tuple[int, int]:
    if zero_for_one:
        return state.reserve0, state.reserve1
    return state.reserve1, state.reserve0


def log_rate(rate: float) -> float:
    """Log of a marginal rate for the screen; an empty direction can never be profitable."""
    return math.log(rate) if rate > 0.0 else -math.inf


DEFAULT_MODELS: Mapping[str, PoolModel] = {"uniswap_v2": V2Model(), "uniswap_v3": V3Model()}
