"""The engine's chain and trading metrics, and the one place that feeds them from its events.

Every metric here is declared once, at import, through :mod:`mevstack.obs.metrics` (so the naming
rules hold).  Most are fed by :class:`EventMetrics` from the events the engine publishes
(``node.status``, ``block.new``, ``mev.opportunity``, ``trade.*``); the rest by the object that
owns the data: the JSON-RPC client (latency, errors), the trading state (kill switch, in-flight
trades, P&L today, balances) and the engine (which chains trade automatically).

Amounts are exact Python ints everywhere in mevstack, but a Prometheus sample is a float64: a
wei figure above 2**53 loses its last digits here.  These gauges are for graphs and alerts;
``/api/trades`` and ``/api/trading/state`` carry the exact decimal strings.

Each :class:`EventMetrics` also writes one INFO log line per trade state change.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from mevstack.obs.metrics import counter, gauge, histogram

log = logging.getLogger("mevstack.trades")

NODE_STATES = ("ok", "lagging", "syncing", "down", "wrong_chain")
TRADE_STATUSES = ("pending", "submitted", "included", "failed", "reverted", "cancelled")
STRATEGIES = ("arbitrage", "backrun")
MAX_REMEMBERED = 50_000  # opportunity / trade ids remembered per process (oldest forgotten)

# -- chain heads and nodes ---------------------------------------------------------------------

HEAD_BLOCK = gauge(
    "mevstack_chain_head_block", "Number of the newest block the engine consumed.", ["chain"]
)
HEAD_TIMESTAMP = gauge(
    "mevstack_chain_head_timestamp_seconds",
    "Unix timestamp of the newest block the engine consumed.",
    ["chain"],
)
HEAD_AGE = gauge(
    "mevstack_chain_head_age_seconds",
    "Seconds between now (at scrape time) and the timestamp of the newest consumed block.",
    ["chain"],
)
NODE_STATE = gauge(
    "mevstack_node_state",
    "1 for the state an RPC endpoint is in (ok, lagging, syncing, down, wrong_chain), else 0.",
    ["chain", "endpoint", "state"],
)
NODE_HEAD_BLOCK = gauge(
    "mevstack_node_head_block", "Latest block an RPC endpoint reported.", ["chain", "endpoint"]
)
NODE_HEAD_AGE = gauge(
    "mevstack_node_head_age_seconds",
    "Age of an RPC endpoint's latest block at its last probe.",
    ["chain", "endpoint"],
)
NODE_LAG = gauge(
    "mevstack_node_lag_blocks",
    "Blocks an RPC endpoint is behind the chain's consensus tip.",
    ["chain", "endpoint"],
)

# -- JSON-RPC calls (fed by mevstack.chain.rpc.RpcClient) --------------------------------------

RPC_LATENCY = histogram(
    "mevstack_rpc_latency_seconds",
    "JSON-RPC call latency by method (a batch is method 'batch'), answered or not.",
    ["chain", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RPC_ERRORS = counter(
    "mevstack_rpc_errors_total",
    "JSON-RPC calls that failed, by method and kind (timeout, transport, rate_limited, "
    "reverted, unknown_block, response).",
    ["chain", "method", "kind"],
)

# -- opportunities and trades -------------------------------------------------------------------

OPPORTUNITIES_FOUND = counter(
    "mevstack_opportunities_found_total",
    "Opportunities published for the first time (or again after they had expired).",
    ["chain", "strategy"],
)
OPPORTUNITIES_EXPIRED = counter(
    "mevstack_opportunities_expired_total",
    "Opportunities published as expired.",
    ["chain", "strategy"],
)
TRADE_TRANSITIONS = counter(
    "mevstack_trade_transitions_total",
    "Trade state changes by the status entered (a reorg re-enters 'submitted').",
    ["chain", "status"],
)
TRADES_IN_FLIGHT = gauge("mevstack_trades_in_flight", "Trades sent and not yet settled.", ["chain"])
LAST_INCLUDED = gauge(
    "mevstack_trade_last_included_timestamp_seconds",
    "Unix time at which this process last saw a trade of the chain included.",
    ["chain"],
)
REALIZED_PROFIT = gauge(
    "mevstack_realized_profit_wei",
    "Realized gross profit of included trades since the process started, in the smallest unit "
    "of the token (a float: the exact figures are in /api/trades).",
    ["chain", "token"],
)
PNL_TODAY = gauge(
    "mevstack_pnl_today_wei",
    "Net P&L of the UTC day in the chain's native wei, after gas (a float: the exact figure is "
    "in /api/trading/state).",
    ["chain"],
)

# -- money and switches (fed by the trading state and the engine) ------------------------------

BALANCE = gauge(
    "mevstack_balance_wei",
    "Balances in native wei: role 'operator' is the signing account's native balance (gas "
    "money), role 'executor' the executor contract's wrapped-native inventory.",
    ["chain", "role"],
)
BALANCE_FLOOR = gauge(
    "mevstack_balance_floor_wei",
    "The balance below which an alert fires, per role (0: no floor).",
    ["chain", "role"],
)
KILL_SWITCH = gauge("mevstack_kill_switch_engaged", "1 while the kill switch is engaged.")
AUTO_TRADING = gauge(
    "mevstack_chain_auto_trading",
    "1 when this engine executes the chain's opportunities by itself (executor configured, "
    "execution lease held, mode paper or live, auto_execute on).",
    ["chain"],
)
CHAIN_PAUSED = gauge(
    "mevstack_chain_paused", "1 while a chain's limits pause its trading.", ["chain"]
)


# chain -> timestamp of its newest consumed block; read at scrape time for the head age
_head_stamps: dict[str, float] = {}


def _head_age(chain: str) -> float:
    stamp = _head_stamps.get(chain)
    return float("nan") if stamp is None else max(0.0, time.time() - stamp)


def declare_chain(chain: str) -> None:
    """Create every per-chain series at its zero value, so an alert that compares an increase
    with 0 has a series to compare before the first event of its kind."""
    for strategy in STRATEGIES:
        OPPORTUNITIES_FOUND.labels(chain=chain, strategy=strategy)
        OPPORTUNITIES_EXPIRED.labels(chain=chain, strategy=strategy)
    for status in TRADE_STATUSES:
        TRADE_TRANSITIONS.labels(chain=chain, status=status)
    TRADES_IN_FLIGHT.labels(chain=chain)
    PNL_TODAY.labels(chain=chain)
    AUTO_TRADING.labels(chain=chain)
    CHAIN_PAUSED.labels(chain=chain)
    HEAD_AGE.labels(chain=chain).set_function(lambda: _head_age(chain))


def set_node_state(chain: str, endpoint: str, state: str) -> None:
    for candidate in NODE_STATES:
        NODE_STATE.labels(chain=chain, endpoint=endpoint, state=candidate).set(
            1 if candidate == state else 0
        )


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


class EventMetrics:
    """Turns each event the engine publishes into metric updates (and trade log lines).

    Fed directly by the engine's publisher, so a replica counts what it did itself, not what
    another replica published on a shared bus.
    """

    def __init__(self) -> None:
        self._open_opportunities: OrderedDict[str, bool] = OrderedDict()
        # trade id -> (token, realized profit) counted in REALIZED_PROFIT, undone on a reorg
        self._realized: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def on_event(self, event: str, chain: str | None, data: Mapping[str, Any]) -> None:
        chain = chain or str(data.get("chain") or "")
        if not chain:
            return
        if event == "block.new":
            self._block(chain, data)
        elif event == "node.status":
            self._node(chain, data)
        elif event == "mev.opportunity":
            self._opportunity(chain, data)
        elif event.startswith("trade."):
            self._trade(chain, data)

    def _block(self, chain: str, data: Mapping[str, Any]) -> None:
        number, stamp = _int(data.get("number")), _int(data.get("timestamp"))
        if number is not None:
            HEAD_BLOCK.labels(chain=chain).set(number)
        if stamp is not None:
            HEAD_TIMESTAMP.labels(chain=chain).set(stamp)
            _head_stamps[chain] = float(stamp)

    def _node(self, chain: str, data: Mapping[str, Any]) -> None:
        url = data.get("url")
        if not isinstance(url, str):
            return
        set_node_state(chain, url, str(data.get("state")))
        head = _int(data.get("head_block"))
        if head is not None:
            NODE_HEAD_BLOCK.labels(chain=chain, endpoint=url).set(head)
        age = data.get("head_age_s")
        if isinstance(age, int | float):
            NODE_HEAD_AGE.labels(chain=chain, endpoint=url).set(age)
        lag = _int(data.get("lag_blocks"))
        if lag is not None:
            NODE_LAG.labels(chain=chain, endpoint=url).set(lag)

    def _opportunity(self, chain: str, data: Mapping[str, Any]) -> None:
        ident = str(data.get("id") or "")
        strategy = str(data.get("kind") or "arbitrage")
        if strategy not in STRATEGIES or not ident:
            return
        if data.get("status") == "expired":
            self._open_opportunities.pop(ident, False)
            OPPORTUNITIES_EXPIRED.labels(chain=chain, strategy=strategy).inc()
            return
        if ident in self._open_opportunities:
            return
        self._open_opportunities[ident] = True
        while len(self._open_opportunities) > MAX_REMEMBERED:
            self._open_opportunities.popitem(last=False)
        OPPORTUNITIES_FOUND.labels(chain=chain, strategy=strategy).inc()

    def _trade(self, chain: str, data: Mapping[str, Any]) -> None:
        status = str(data.get("status") or "")
        if status not in TRADE_STATUSES:
            return
        ident = str(data.get("id") or "")
        TRADE_TRANSITIONS.labels(chain=chain, status=status).inc()
        undone = self._realized.pop(ident, None)
        if undone is not None:  # the trade left 'included' (a reorg): take its profit back
            token, amount = undone
            REALIZED_PROFIT.labels(chain=chain, token=token).dec(amount)
        realized = _int(data.get("realized_profit"))
        token = str(data.get("token") or "")
        if status == "included":
            LAST_INCLUDED.labels(chain=chain).set(time.time())
            if realized is not None and token:
                REALIZED_PROFIT.labels(chain=chain, token=token).inc(realized)
                self._realized[ident] = (token, realized)
                while len(self._realized) > MAX_REMEMBERED:
                    self._realized.popitem(last=False)
        hashes = data.get("tx_hashes") or []
        log.info(
            "trade %s on %s: %s",
            ident,
            chain,
            status,
            extra={
                "trade_id": ident,
                "chain": chain,
                "status": status,
                "tx_hash": hashes[-1] if isinstance(hashes, list) and hashes else None,
                "opportunity_id": data.get("opportunity_id"),
                "token": token or None,
                "expected_profit": data.get("expected_profit"),
                "realized_profit": data.get("realized_profit"),
                "net_pnl_wei": data.get("net_pnl_wei"),
                "block_number": data.get("block_number"),
                "error": data.get("error"),
            },
        )
