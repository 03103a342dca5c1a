"""Valuation of a cycle in native wei: its gas cost, and its profit converted to native wei.

Rules (these are estimates, computed from exact inputs):

* gas cost = path gas estimate × gas price + the L1 data fee (rollups; 0 elsewhere);
* a profit in the wrapped native token is already native wei;
* a profit in any other start token is worth what an exact sell of that profit returns on the
  deepest pool between it and the wrapped native token that is *not* on the path (nor touched by
  a trigger tx): the trade leaves that pool untouched, so its current state is the post-trade
  state.  No such pool, no valuation — and no opportunity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mevstack.errors import MevstackError
from mevstack.strategy.pools import TX_BASE_GAS, PoolModel
from mevstack.strategy.sizing import Leg


class InvalidGasQuote(MevstackError):
    """A gas quote without the fields a valuation needs."""


# Calldata of one executor call (selector, amounts, a few packed hops, signature overhead): the
# size the L1 data fee of a rollup is charged on.  An estimate, like every pre-inclusion figure.
EXECUTOR_TX_BYTES = 400
# The GasQuote's L1 figure is the fee of 1,024 bytes (see chain/gas.py), not of 1,000.
L1_FEE_QUOTE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class GasInputs:
    """The gas price to pay (base fee of the next block + tip) and the L1 data fee, in wei."""

    gas_price_wei: int
    l1_data_fee_wei: int = 0

    @classmethod
    def from_gas_quote(
        cls, quote: Mapping[str, Any], *, tx_bytes: int = EXECUTOR_TX_BYTES
    ) -> GasInputs:
        """From a GasQuote: next base fee + median tip; the L1 fee of ``tx_bytes`` pro rata to
        the quote's fee of 1,024 bytes, rounded up (a cost estimate errs on the dear side)."""
        try:
            price = int(quote["next_base_fee_wei"]) + int(quote["priority_fee_wei"]["p50"])
            per_kb = int(quote.get("l1_data_fee_wei_per_kb") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidGasQuote(f"not a GasQuote: missing or malformed {exc}") from None
        return cls(price, -(-per_kb * tx_bytes // L1_FEE_QUOTE_BYTES))


def path_gas(legs: Sequence[Leg], ticks_crossed: Sequence[int]) -> int:
    """Estimated gas of executing the path in one executor transaction: the executor's own
    ``TX_BASE_GAS`` plus each hop's figure from its pool kind (calibrated against receipts by
    tests/execution/test_gas_calibration.py, within ±10% in flash and funded mode alike).
    """
    return TX_BASE_GAS + sum(
        leg.model.hop_gas(leg.state, t) for leg, t in zip(legs, ticks_crossed, strict=True)
    )


def gas_cost_wei(gas_estimate: int, gas: GasInputs) -> int:
    return gas_estimate * gas.gas_price_wei + gas.l1_data_fee_wei


@dataclass(frozen=True, slots=True)
class ValuationRoute:
    """Converts amounts of one token to native wei; ``pool is None`` means it is native already."""

    token: str
    pool: str | None = None
    state: Any = None
    model: PoolModel | None = None
    zero_for_one: bool = True

    def value(self, amount: int) -> int:
        """Exact native wei an immediate sell of ``amount`` returns (0 for dust that yields 0)."""
        if amount <= 0:
            return 0
        if self.model is None:
            return amount
        quote = self.model.quote(self.state, self.zero_for_one, amount)
        return 0 if quote is None else quote.amount_out


def valuation_route(
    token: str,
    wrapped_native: str,
    candidates: Iterable[tuple[str, Any, PoolModel]],
    exclude: set[str],
) -> ValuationRoute | None:
    """The route pricing ``token`` in native wei, from pools ``(address, state, model)`` between
    ``token`` and the wrapped native token, skipping ``exclude``d pools (lower-case addresses);
    ``None`` if none is left.
    """
    if token.lower() == wrapped_native.lower():
        return ValuationRoute(token)
    best: ValuationRoute | None = None
    best_depth = 0
    for address, state, model in candidates:
        if address.lower() in exclude:
            continue
        native_is_0 = state.token0.lower() == wrapped_native.lower()
        depth = model.depth(state, state.token0 if native_is_0 else state.token1)
        if depth > best_depth:
            best_depth = depth
            best = ValuationRoute(token, address, state, model, not native_is_0)
    return best
