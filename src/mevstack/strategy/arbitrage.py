"""Cyclic arbitrage over one chain's pools: screen, size, value, emit Opportunities.

``ArbitrageScanner`` keeps what survives between blocks — the cycle index and the table of
log marginal rates per (pool, direction) — so that after a block only the cycles touching a
changed pool are screened again (``changed=None`` rescans everything: on start, after a
rollback).  A scan is pure: pool states, gas inputs, block number and the detection time come in,
opportunities go out.

Screen: a cycle can only be profitable if the product of its marginal rates after fees exceeds 1
(every swap curve is concave), i.e. the sum of log rates is positive; this is one NumPy gather
over all cycles.  Survivors are sized exactly (``sizing``), valued (``valuation``) and emitted
when ``net_profit_wei`` exceeds the chain's ``min_net_profit_wei``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mevstack.config import ChainConfig
from mevstack.strategy.cycles import Cycle, CycleIndex
from mevstack.strategy.opportunity import Hop, Opportunity, OpportunityKind, opportunity_id
from mevstack.strategy.pools import DEFAULT_MODELS, PoolModel, log_rate
from mevstack.strategy.sizing import Leg, PathEval, optimise
from mevstack.strategy.valuation import (
    GasInputs,
    ValuationRoute,
    gas_cost_wei,
    path_gas,
    valuation_route,
)

DEFAULT_EXPIRY_BLOCKS = 2


@dataclass(frozen=True, slots=True)
class ChainTerms:
    """The per-chain inputs of a scan that come from the config."""

    chain: str
    chain_id: int
    base_tokens: tuple[str, ...]
    wrapped_native: str
    max_hops: int = 3
    min_net_profit_wei: int = 0
    max_trade_wei: int = 0  # 0: no cap
    expiry_blocks: int = DEFAULT_EXPIRY_BLOCKS

    @classmethod
    def from_config(cls, chain: ChainConfig) -> ChainTerms:
        bases = tuple(chain.base_tokens) or (chain.wrapped_native,)
        return cls(
            chain=chain.name,
            chain_id=chain.chain_id,
            base_tokens=bases,
            wrapped_native=chain.wrapped_native,
            max_hops=chain.max_hops,
            min_net_profit_wei=chain.min_net_profit_wei,
            max_trade_wei=chain.max_trade_wei,
        )


@dataclass(frozen=True, slots=True)
class ScanStats:
    """What the last scan did: how many cycles it screened and how many it sized."""

    screened: int
    sized: int
    emitted: int


class ArbitrageScanner:
    """Stateful across blocks (index and rate table), pure within a scan."""

    def __init__(self, terms: ChainTerms, models: Mapping[str, PoolModel] | None = None) -> None:
        self.terms = terms
        self.models: Mapping[str, PoolModel] = DEFAULT_MODELS if models is None else models
        self.index = CycleIndex(terms.base_tokens, terms.max_hops)
        self._rates: npt.NDArray[np.float64] = np.zeros(2, dtype=np.float64)
        self._rated = 0  # pools whose rates are in the table
        self.last_stats = ScanStats(0, 0, 0)

    def add_pools(self, pools: Iterable[Any]) -> int:
        """Index newly discovered pools (anything with address, token0, token1, dex)."""
        return self.index.add_pools(pools)

    def scan(
        self,
        states: Mapping[str, Any],
        *,
        block_number: int,
        gas: GasInputs,
        detected_at: str,
        changed: Iterable[str] | None = None,
        kind: OpportunityKind = "arbitrage",
        trigger_tx: str | None = None,
        untouchable: AbstractSet[str] = frozenset(),
        blocked_tokens: AbstractSet[str] = frozenset(),
    ) -> list[Opportunity]:
        """Opportunities at ``block_number``, best net profit first.

        ``states`` maps pool address to its state at that block.  ``changed`` limits the scan to
        cycles touching those pools (``None``: all cycles).  ``untouchable`` pools (e.g. touched
        by a trigger tx) are never used for valuation; no path goes through ``blocked_tokens``.
        """
        codes_all = self.index.leg_codes()
        if changed is None:
            self._refresh_rates(states, None)
            ids: npt.NDArray[np.int64] = np.arange(len(codes_all), dtype=np.int64)
        else:
            changed_list = list(changed)
            self._refresh_rates(states, changed_list)
            ids = np.asarray(self.index.cycles_touching(changed_list), dtype=np.int64)
        if len(ids) == 0:
            self.last_stats = ScanStats(0, 0, 0)
            return []
        codes = codes_all[ids]
        forward = self._rates[codes].sum(axis=1)
        backward = self._rates[codes ^ 1].sum(axis=1)
        survivors: list[Cycle] = []
        for cycle_id in ids[forward > 0.0].tolist():
            survivors.append(self.index.cycles[cycle_id])
        for cycle_id in ids[backward > 0.0].tolist():
            survivors.append(self.index.cycles[cycle_id].reversed())
        found: list[Opportunity] = []
        for cycle in survivors:
            opportunity = self._evaluate(
                cycle,
                states,
                block_number=block_number,
                gas=gas,
                detected_at=detected_at,
                kind=kind,
                trigger_tx=trigger_tx,
                untouchable=untouchable,
                blocked_tokens=blocked_tokens,
            )
            if opportunity is not None:
                found.append(opportunity)
        found.sort(key=lambda o: (-o.net_profit_wei, o.id))
        self.last_stats = ScanStats(len(ids), len(survivors), len(found))
        return found

    def _refresh_rates(self, states: Mapping[str, Any], changed: list[str] | None) -> None:
        n = len(self.index.pools)
        if n != self._rated or len(self._rates) != 2 * n + 2:
            # new pools: grow the table (two trailing zeros serve the padding codes)
            grown = np.zeros(2 * n + 2, dtype=np.float64)
            grown[: 2 * self._rated] = self._rates[: 2 * self._rated]
            new_addresses = [p.address for p in self.index.pools[self._rated :]]
            self._rates = grown
            self._rated = n
            if changed is not None:
                self._rate_pools(states, new_addresses)
        if changed is None:
            self._rate_pools(states, [p.address for p in self.index.pools])
        else:
            self._rate_pools(states, changed)

    def _rate_pools(self, states: Mapping[str, Any], addresses: Iterable[str]) -> None:
        rates = self._rates
        for address in addresses:
            index = self.index.pool_ids.get(address.lower())
            if index is None:
                continue
            state = _lookup(states, address)
            model = None if state is None else self.models.get(state.kind)
            if state is None or model is None:
                rates[2 * index] = rates[2 * index + 1] = -np.inf
                continue
            rates[2 * index] = log_rate(model.rate(state, True))
            rates[2 * index + 1] = log_rate(model.rate(state, False))

    def _evaluate(
        self,
        cycle: Cycle,
        states: Mapping[str, Any],
        *,
        block_number: int,
        gas: GasInputs,
        detected_at: str,
        kind: OpportunityKind,
        trigger_tx: str | None,
        untouchable: AbstractSet[str],
        blocked_tokens: AbstractSet[str],
    ) -> Opportunity | None:
        terms = self.terms
        keys = [self.index.pools[p] for p in cycle.pools]
        blocked = {t.lower() for t in blocked_tokens}
        legs: list[Leg] = []
        tokens: list[tuple[str, str]] = []
        for key, zero_for_one in zip(keys, cycle.zero_for_one, strict=True):
            state = _lookup(states, key.address)
            model = None if state is None else self.models.get(state.kind)
            if model is None:
                return None
            pair = (key.token0, key.token1) if zero_for_one else (key.token1, key.token0)
            if blocked and (pair[0].lower() in blocked or pair[1].lower() in blocked):
                return None
            legs.append(Leg(state, model, zero_for_one))
            tokens.append(pair)
        on_path = {k.address.lower() for k in keys}
        route = self._valuation(cycle.start, on_path | {a.lower() for a in untouchable}, states)
        if route is None:
            return None
        cap = self._cap(route)

        def net(at: PathEval) -> int:
            return route.value(at.gross_profit) - gas_cost_wei(
                path_gas(legs, at.ticks_crossed), gas
            )

        sized = optimise(legs, net, cap=cap)
        if sized is None or sized.net <= terms.min_net_profit_wei:
            return None
        at = sized.path
        gas_estimate = path_gas(legs, at.ticks_crossed)
        hops: list[Hop] = []
        amount = at.amount_in
        for key, (t_in, t_out), out in zip(keys, tokens, at.amounts_out, strict=True):
            hops.append(Hop(key.dex, key.address, t_in, t_out, amount, out, key.kind))
            amount = out
        ident = opportunity_id(
            terms.chain_id, kind, [(h.pool, h.token_in, h.token_out) for h in hops], trigger_tx
        )
        return Opportunity(
            id=ident,
            chain=terms.chain,
            chain_id=terms.chain_id,
            kind=kind,
            block_number=block_number,
            token=cycle.start,
            amount_in=at.amount_in,
            amount_out=at.amount_out,
            gross_profit=at.gross_profit,
            gas_estimate=gas_estimate,
            gas_price_wei=gas.gas_price_wei,
            gas_cost_wei=gas_cost_wei(gas_estimate, gas),
            net_profit_wei=sized.net,
            path=tuple(hops),
            trigger_tx=trigger_tx,
            status="detected",
            detected_at=detected_at,
            expires_at_block=block_number + terms.expiry_blocks,
        )

    def _valuation(
        self, token: str, exclude: AbstractSet[str], states: Mapping[str, Any]
    ) -> ValuationRoute | None:
        native = self.terms.wrapped_native
        if token.lower() == native.lower():
            return ValuationRoute(token)
        candidates: list[tuple[str, Any, PoolModel]] = []
        for index in self.index.pools_between(token, native):
            address = self.index.pools[index].address
            state = _lookup(states, address)
            model = None if state is None else self.models.get(state.kind)
            if model is not None:
                candidates.append((address, state, model))
        return valuation_route(token, native, candidates, set(exclude))

    def _cap(self, route: ValuationRoute) -> int | None:
        """``max_trade_wei`` in the start token: what that much native buys on the route."""
        limit = self.terms.max_trade_wei
        if limit <= 0:
            return None
        if route.model is None:
            return limit
        quote = route.model.quote(route.state, not route.zero_for_one, limit)
        return 0 if quote is None else quote.amount_out


def _lookup(states: Mapping[str, Any], address: str) -> Any:
    """A pool's state whether ``states`` is keyed by checksummed or lower-case address."""
    state = states.get(address)
    return states.get(address.lower()) if state is None else state


def scan(
    pools_state: Mapping[str, Any],
    changed_pools: Iterable[str] | None,
    gas: GasInputs | Mapping[str, Any],
    chain: ChainConfig | ChainTerms,
    *,
    block_number: int,
    detected_at: str,
    models: Mapping[str, PoolModel] | None = None,
) -> list[Opportunity]:
    """One-shot scan over ``pools_state`` (indexes the pools first; keep an ``ArbitrageScanner``
    between blocks to make ``changed_pools`` pay off).  ``gas`` is ``GasInputs`` or a GasQuote
    as docs/contracts.md shapes it."""
    terms = chain if isinstance(chain, ChainTerms) else ChainTerms.from_config(chain)
    inputs = gas if isinstance(gas, GasInputs) else GasInputs.from_gas_quote(gas)
    scanner = ArbitrageScanner(terms, models)
    scanner.add_pools(pools_state.values())
    return scanner.scan(
        pools_state,
        block_number=block_number,
        gas=inputs,
        detected_at=detected_at,
        changed=changed_pools,
    )
