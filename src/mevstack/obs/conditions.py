"""When the engine cannot trade, and why: the conditions a person must see (pure, no I/O, no clock).

:class:`ConditionTracker` is fed the engine's own events with their time (``on_event``) and, at
each evaluation, the facts only the trading state knows (:class:`Facts`).  It keeps the set of
active conditions and says which were raised and which cleared since the last evaluation.  The
same rules, over the same metrics, ship as Prometheus alerting rules (``deploy/prometheus``):

* ``chain_down``: no RPC endpoint of the chain is ``ok`` (every known one is down, lagging,
  syncing or on the wrong chain);
* ``chain_not_trading``: the chain trades by itself (live, auto-execute, executor, lease) and has
  had opportunities within its window, yet no trade of it was included within that window, and
  trading has been on for at least the window (so a fresh start is not an alarm);
* ``trades_failing``: within ``failing_window`` seconds at least ``failing_min`` trades failed or
  reverted, and more of them than were included;
* ``balance_low``: the operator's native balance or the executor's inventory is below its floor;
* ``kill_switch``: the kill switch is engaged (nothing is signed anywhere).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("kill_switch", "chain_down", "chain_not_trading", "trades_failing", "balance_low")
FAILED_STATUSES = frozenset({"failed", "reverted"})


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str
    chain: str | None
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.kind, self.chain)


@dataclass(frozen=True, slots=True)
class ChainFacts:
    auto_trading: bool = False
    # (role, balance, floor) of each balance below its floor, in native wei
    low_balances: tuple[tuple[str, int, int], ...] = ()
    symbol: str = "native"


@dataclass(frozen=True, slots=True)
class Facts:
    kill_switch: bool = False
    kill_reason: str | None = None
    chains: Mapping[str, ChainFacts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    raised: list[Condition]
    cleared: list[Condition]


def not_trading_window(block_time: float) -> float:
    """Seconds without an inclusion, while opportunities come, before a chain is 'not trading':
    30 blocks, and never under two minutes (an idle market is not a fault)."""
    return max(120.0, 30.0 * block_time)


@dataclass
class _Chain:
    nodes: dict[str, str] = field(default_factory=dict)
    last_opportunity: float | None = None
    last_included: float | None = None
    auto_since: float | None = None
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)


class ConditionTracker:
    """See the module docstring.  Times are seconds on any one clock, passed in by the caller."""

    def __init__(
        self,
        windows: Mapping[str, float],
        *,
        failing_window: float = 300.0,
        failing_min: int = 3,
    ) -> None:
        self.windows = dict(windows)
        self.failing_window = failing_window
        self.failing_min = failing_min
        self._chains: dict[str, _Chain] = {}
        self._active: dict[tuple[str, str | None], tuple[Condition, float]] = {}

    def _chain(self, name: str) -> _Chain:
        return self._chains.setdefault(name, _Chain())

    def on_event(self, event: str, chain: str | None, data: Mapping[str, Any], now: float) -> None:
        chain = chain or data.get("chain")
        if not isinstance(chain, str) or not chain:
            return
        if event == "node.status":
            url = data.get("url")
            if isinstance(url, str):
                self._chain(chain).nodes[url] = str(data.get("state"))
        elif event == "mev.opportunity":
            if data.get("status") != "expired":
                self._chain(chain).last_opportunity = now
        elif event.startswith("trade."):
            status = data.get("status")
            state = self._chain(chain)
            if status == "included":
                state.last_included = now
                state.outcomes.append((now, True))
            elif status in FAILED_STATUSES:
                state.outcomes.append((now, False))

    def _conditions(self, facts: Facts, now: float) -> list[Condition]:
        found: list[Condition] = []
        if facts.kill_switch:
            reason = facts.kill_reason or "no reason given"
            found.append(
                Condition("kill_switch", None, f"kill switch engaged: {reason}", {"reason": reason})
            )
        for name in sorted(set(self._chains) | set(facts.chains)):
            state = self._chain(name)
            chain_facts = facts.chains.get(name, ChainFacts())
            found.extend(self._chain_conditions(name, state, chain_facts, now))
        return found

    def _chain_conditions(
        self, name: str, state: _Chain, facts: ChainFacts, now: float
    ) -> list[Condition]:
        found: list[Condition] = []
        if state.nodes and not any(s == "ok" for s in state.nodes.values()):
            summary = ", ".join(f"{url}: {s}" for url, s in sorted(state.nodes.items()))
            found.append(
                Condition(
                    "chain_down", name, f"no healthy node ({summary})", {"nodes": dict(state.nodes)}
                )
            )
        window = self.windows.get(name, 120.0)
        if not facts.auto_trading:
            state.auto_since = None
        elif state.auto_since is None:
            state.auto_since = now
        if (
            state.auto_since is not None
            and now - state.auto_since >= window
            and state.last_opportunity is not None
            and now - state.last_opportunity <= window
            and (state.last_included is None or now - state.last_included > window)
        ):
            last = state.last_included
            since = "" if last is None else f" (the last {now - last:.0f} s ago)"
            found.append(
                Condition(
                    "chain_not_trading",
                    name,
                    f"opportunities but no trade included for {window:.0f} s{since}",
                    {"window_s": window},
                )
            )
        while state.outcomes and now - state.outcomes[0][0] > self.failing_window:
            state.outcomes.popleft()
        failed = sum(1 for _, ok in state.outcomes if not ok)
        included = len(state.outcomes) - failed
        if failed >= self.failing_min and failed > included:
            found.append(
                Condition(
                    "trades_failing",
                    name,
                    f"{failed} trades failed and {included} included "
                    f"in the last {self.failing_window:.0f} s",
                    {"failed": failed, "included": included},
                )
            )
        if facts.low_balances:
            parts = [
                f"{role} balance {balance} wei below the floor {floor} wei"
                for role, balance, floor in facts.low_balances
            ]
            found.append(
                Condition(
                    "balance_low",
                    name,
                    f"{'; '.join(parts)} ({facts.symbol})",
                    {
                        role: {"balance_wei": str(balance), "floor_wei": str(floor)}
                        for role, balance, floor in facts.low_balances
                    },
                )
            )
        return found

    def evaluate(self, facts: Facts, now: float) -> Change:
        """Bring the active set up to date; what was raised and what cleared since last time.

        A condition that stays active keeps its first time; its message may change (counts)."""
        current = {c.key: c for c in self._conditions(facts, now)}
        raised = [c for k, c in current.items() if k not in self._active]
        cleared = [c for k, (c, _) in self._active.items() if k not in current]
        self._active = {
            k: (c, self._active[k][1] if k in self._active else now) for k, c in current.items()
        }
        return Change(raised, cleared)

    def active(self) -> list[tuple[Condition, float]]:
        """Every active condition with the time it was first seen, kill switch first."""
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(
            self._active.values(), key=lambda item: (order[item[0].kind], item[0].chain or "")
        )
