"""The trading state: mode, auto-execution, kill switch, per-chain limits, blocklist, P&L today.

One class, :class:`TradingState`, is the only interface the engine, the API and the exploit feed
use to read or change it.  Every change is validated first (nothing is applied if any part is
bad), written to the store's ``kv_state`` and audited in ``audit_log`` (who, what, when), so it
survives restarts: :meth:`TradingState.load` re-reads it.

Precedence on load: the config gives the defaults (mode, auto_execute, per-chain limits); changes
made at run time are persisted as overrides and win, except that an edited config ``engine.mode``
(different from the one in force when the state was last saved) wins over the saved mode, so an
operator who sets ``mode = "observe"`` in the file and restarts is obeyed.

The kill switch is a :class:`SigningGate` that every signer checks right before signing.

Every change is also one INFO log line (logger ``mevstack.audit``: actor, action, details), and
the facts Prometheus alerts on (kill switch, in-flight trades, P&L today, balances and their
floors, paused chains) are kept in the gauges of :mod:`mevstack.obs.engine_metrics`.

P&L and balances are per chain in that chain's native unit, shown with its symbol
(``native_symbol``): a wei of POL is not a wei of ETH, so amounts of chains with different
symbols are never added up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mevstack.config import Settings
from mevstack.errors import MevstackError
from mevstack.execution.risk import (
    BLOCK_KINDS,
    BlockEntry,
    BlockKind,
    Candidate,
    ChainLimits,
    ChainStatus,
    Mode,
    RiskConfigError,
    RiskDecision,
    evaluate,
    parse_address,
    parse_mode,
    paused_reason,
)
from mevstack.obs import engine_metrics as metrics
from mevstack.store import Store

KV_KEY = "execution.trading_state"
BALANCE_ROLES = ("operator", "executor")

audit_log = logging.getLogger("mevstack.audit")


class KillSwitchEngaged(MevstackError):
    """Signing was attempted while the kill switch is on."""


class SigningGate:
    """Open unless the kill switch is on; signers call :meth:`check` right before signing."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def check(self) -> None:
        if not self._open.is_set():
            raise KillSwitchEngaged("kill switch engaged: signing is stopped")

    async def wait_open(self) -> None:
        await self._open.wait()


def _require_actor(actor: str) -> None:
    if not actor or not isinstance(actor, str):
        raise RiskConfigError("a trading-state change needs an actor (who made it)")


def _now() -> datetime:
    return datetime.now(UTC)


def _default_limits(settings: Settings) -> dict[str, ChainLimits]:
    return {
        c.name: ChainLimits(
            max_trade_wei=c.max_trade_wei,
            daily_loss_limit_wei=c.daily_loss_limit_wei,
            min_net_profit_wei=c.min_net_profit_wei,
        )
        for c in settings.chains
    }


class TradingState:
    """The live trading state of one engine, persisted in a :class:`Store`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.mode: Mode = settings.engine.mode
        self.auto_execute = settings.engine.auto_execute
        self.kill_switch = False
        self.kill_reason: str | None = None
        self.limits = _default_limits(settings)
        self._limit_overrides: dict[str, dict[str, Any]] = {}
        self.blocklist: list[BlockEntry] = []
        self.pnl_day = _now().date().isoformat()
        self.pnl_today: dict[str, int] = {}
        self.gate = SigningGate()
        # runtime facts fed by the tracker and the balance poller; not persisted
        self.in_flight: dict[str, int] = {}
        self.native_balance: dict[str, int] = {}
        self.executor_balance: dict[str, int] = {}
        self.symbols = {c.name: c.symbol for c in settings.chains}
        self._floors = {
            c.name: (c.operator_balance_floor_wei, c.executor_balance_floor_wei)
            for c in settings.chains
        }
        for chain in self.limits:
            metrics.declare_chain(chain)
        self._export()

    # -- persistence ---------------------------------------------------------------------------

    @classmethod
    def load(cls, store: Store, settings: Settings) -> TradingState:
        state = cls(store, settings)
        doc = store.kv_get(KV_KEY)
        if isinstance(doc, dict):
            state._restore(doc)
        return state

    def reload(self) -> None:
        """Re-read the persisted state (another replica may have changed it)."""
        doc = self.store.kv_get(KV_KEY)
        if isinstance(doc, dict):
            self._restore(doc)

    def _restore(self, doc: Mapping[str, Any]) -> None:
        try:
            if doc.get("config_mode") == self.settings.engine.mode:
                self.mode = parse_mode(doc.get("mode", self.mode))
            self.auto_execute = bool(doc.get("auto_execute", self.auto_execute))
            self.kill_switch = bool(doc.get("kill_switch", False))
            self.kill_reason = doc.get("kill_reason")
            overrides = doc.get("limits", {})
            defaults = _default_limits(self.settings)
            self._limit_overrides = {
                name: dict(changes) for name, changes in overrides.items() if name in defaults
            }
            self.limits = {
                name: limits.updated(self._limit_overrides.get(name, {}))
                for name, limits in defaults.items()
            }
            self.blocklist = [BlockEntry.from_json(e) for e in doc.get("blocklist", [])]
            self.pnl_day = str(doc.get("pnl_day", self.pnl_day))
            self.pnl_today = {k: int(v) for k, v in doc.get("pnl_today", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise MevstackError(f"persisted trading state {KV_KEY!r} is corrupt: {exc}") from None
        if self.kill_switch:
            self.gate.close()
        else:
            self.gate.open()
        self._export()

    def _export(self) -> None:
        """Refresh the gauges that mirror this state."""
        metrics.KILL_SWITCH.set(1 if self.kill_switch else 0)
        for chain in self.limits:
            metrics.PNL_TODAY.labels(chain=chain).set(self.pnl_today.get(chain, 0))
            for role in BALANCE_ROLES:
                metrics.BALANCE_FLOOR.labels(chain=chain, role=role).set(
                    self.balance_floor(chain, role)
                )

    def _persist(self) -> None:
        self.store.kv_set(
            KV_KEY,
            {
                "mode": self.mode,
                "config_mode": self.settings.engine.mode,
                "auto_execute": self.auto_execute,
                "kill_switch": self.kill_switch,
                "kill_reason": self.kill_reason,
                "limits": self._limit_overrides,
                "blocklist": [e.to_json() for e in self.blocklist],
                "pnl_day": self.pnl_day,
                "pnl_today": {k: str(v) for k, v in self.pnl_today.items()},
            },
        )

    def _commit(self, actor: str, action: str, details: Mapping[str, Any]) -> None:
        self._persist()
        self.store.audit(actor, action, details)
        self._export()
        audit_log.info(
            "%s by %s", action, actor, extra={"actor": actor, "action": action, "details": details}
        )

    # -- changes -------------------------------------------------------------------------------
    # Each change validates everything (the actor included) before touching any state.

    def set_mode(self, mode: object, *, actor: str) -> None:
        _require_actor(actor)
        new = parse_mode(mode)
        old, self.mode = self.mode, new
        self._commit(actor, "trading.set_mode", {"from": old, "to": new})

    def set_auto_execute(self, enabled: object, *, actor: str) -> None:
        _require_actor(actor)
        if not isinstance(enabled, bool):
            raise RiskConfigError(f"auto_execute: expected true or false, got {enabled!r}")
        old, self.auto_execute = self.auto_execute, enabled
        self._commit(actor, "trading.set_auto_execute", {"from": old, "to": enabled})

    def set_kill_switch(self, engaged: object, *, actor: str, reason: str = "") -> None:
        """Engage (stops every signer at once) or release the kill switch."""
        _require_actor(actor)
        if not isinstance(engaged, bool):
            raise RiskConfigError(f"kill_switch: expected true or false, got {engaged!r}")
        if engaged:
            self.gate.close()
        self.kill_switch = engaged
        self.kill_reason = reason or None if engaged else None
        self._commit(actor, "trading.kill_switch", {"engaged": engaged, "reason": reason})
        if not engaged:
            self.gate.open()

    def set_limits(self, chain: str, changes: Mapping[str, object], *, actor: str) -> ChainLimits:
        _require_actor(actor)
        if chain not in self.limits:
            raise RiskConfigError(f"limits: no chain named {chain!r}")
        updated = self.limits[chain].updated(changes)
        old = self.limits[chain]
        self.limits[chain] = updated
        merged = {**self._limit_overrides.get(chain, {})}
        merged.update({k: v if k == "max_in_flight" else str(v) for k, v in changes.items()})
        self._limit_overrides[chain] = merged
        self._commit(
            actor,
            "trading.set_limits",
            {"chain": chain, "from": old.to_json(), "to": updated.to_json()},
        )
        return updated

    def block(
        self,
        kind: object,
        address: object,
        *,
        actor: str,
        source: str,
        reason: str = "",
        chain: str | None = None,
        ttl_seconds: float | None = None,
    ) -> BlockEntry:
        """Blocklist a token or pool (on one chain, or everywhere); replaces an existing entry."""
        _require_actor(actor)
        if kind not in BLOCK_KINDS:
            raise RiskConfigError(f"blocklist kind: expected token or pool, got {kind!r}")
        if chain is not None and chain not in self.limits:
            raise RiskConfigError(f"blocklist: no chain named {chain!r}")
        if not source:
            raise RiskConfigError("blocklist: an entry needs a source")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise RiskConfigError(f"blocklist ttl: expected > 0 seconds, got {ttl_seconds!r}")
        now = _now()
        entry = BlockEntry(
            kind=kind,
            address=parse_address("blocklist address", address),
            chain=chain,
            source=source,
            reason=reason,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds),
        )
        self.blocklist = [
            e
            for e in self.blocklist
            if not (e.kind == entry.kind and e.address == entry.address and e.chain == chain)
            and e.active(now)
        ] + [entry]
        self._commit(actor, "trading.block", entry.to_json())
        return entry

    def unblock(
        self, kind: BlockKind, address: str, *, actor: str, chain: str | None = None
    ) -> bool:
        _require_actor(actor)
        checksummed = parse_address("blocklist address", address)
        kept = [
            e
            for e in self.blocklist
            if not (e.kind == kind and e.address == checksummed and e.chain == chain)
        ]
        removed = len(kept) != len(self.blocklist)
        if removed:
            self.blocklist = kept
            self._commit(
                actor, "trading.unblock", {"kind": kind, "address": checksummed, "chain": chain}
            )
        return removed

    def apply_patch(self, patch: Mapping[str, Any], *, actor: str) -> None:
        """PATCH /api/trading/state: ``mode``, ``auto_execute``, ``kill_switch`` (+ ``reason``),
        ``limits: {chain: {...}}``.  Everything is validated before anything is applied."""
        _require_actor(actor)
        allowed = {"mode", "auto_execute", "kill_switch", "reason", "limits"}
        unknown = sorted(set(patch) - allowed)
        if unknown:
            raise RiskConfigError(f"trading state: unknown key {unknown[0]!r}")
        if "mode" in patch:
            parse_mode(patch["mode"])
        for key in ("auto_execute", "kill_switch"):
            if key in patch and not isinstance(patch[key], bool):
                raise RiskConfigError(f"{key}: expected true or false, got {patch[key]!r}")
        if not isinstance(patch.get("reason", ""), str):
            raise RiskConfigError("reason: expected a string")
        limits = patch.get("limits", {})
        if not isinstance(limits, Mapping):
            raise RiskConfigError("limits: expected an object keyed by chain name")
        for chain, changes in limits.items():
            if chain not in self.limits or not isinstance(changes, Mapping):
                raise RiskConfigError(f"limits: no chain named {chain!r} (or not an object)")
            self.limits[chain].updated(changes)
        # the kill switch goes first so that a patch engaging it takes effect before the rest
        if "kill_switch" in patch:
            self.set_kill_switch(patch["kill_switch"], actor=actor, reason=patch.get("reason", ""))
        if "mode" in patch:
            self.set_mode(patch["mode"], actor=actor)
        if "auto_execute" in patch:
            self.set_auto_execute(patch["auto_execute"], actor=actor)
        for chain, changes in limits.items():
            self.set_limits(chain, changes, actor=actor)

    # -- runtime facts -------------------------------------------------------------------------

    def _roll_day(self) -> None:
        today = _now().date().isoformat()
        if today != self.pnl_day:
            self.pnl_day = today
            self.pnl_today = {}
            self._export()

    def record_pnl(self, chain: str, delta_wei: int) -> None:
        """Add a trade's net P&L (negative for a loss; the reverse delta undoes it on a reorg)."""
        self._roll_day()
        self.pnl_today[chain] = self.pnl_today.get(chain, 0) + delta_wei
        self._persist()
        metrics.PNL_TODAY.labels(chain=chain).set(self.pnl_today[chain])
        self._export_paused(chain)

    def set_in_flight(self, chain: str, count: int) -> None:
        self.in_flight[chain] = count
        metrics.TRADES_IN_FLIGHT.labels(chain=chain).set(count)

    def set_native_balance(self, chain: str, balance_wei: int) -> None:
        """The operator's native balance (its gas money)."""
        self.native_balance[chain] = balance_wei
        metrics.BALANCE.labels(chain=chain, role="operator").set(balance_wei)
        self._export_paused(chain)

    def set_executor_balance(self, chain: str, balance_wei: int) -> None:
        """The executor contract's wrapped-native inventory."""
        self.executor_balance[chain] = balance_wei
        metrics.BALANCE.labels(chain=chain, role="executor").set(balance_wei)

    def _export_paused(self, chain: str) -> None:
        limits = self.limits.get(chain)
        if limits is not None:
            paused = paused_reason(limits, self.status(chain)) is not None
            metrics.CHAIN_PAUSED.labels(chain=chain).set(1 if paused else 0)

    def balance_floor(self, chain: str, role: str) -> int:
        """The alert floor of a balance (0: none); the operator's defaults to the pause floor."""
        operator, executor = self._floors.get(chain, (0, 0))
        if role == "executor":
            return executor
        limits = self.limits.get(chain)
        return operator or (limits.min_native_balance_wei if limits is not None else 0)

    def low_balances(self, chain: str) -> list[tuple[str, int, int]]:
        """``(role, balance, floor)`` of every known balance of ``chain`` below its floor."""
        known = {
            "operator": self.native_balance.get(chain),
            "executor": self.executor_balance.get(chain),
        }
        low: list[tuple[str, int, int]] = []
        for role, balance in known.items():
            floor = self.balance_floor(chain, role)
            if balance is not None and floor and balance < floor:
                low.append((role, balance, floor))
        return low

    def status(self, chain: str) -> ChainStatus:
        self._roll_day()
        return ChainStatus(
            in_flight=self.in_flight.get(chain, 0),
            native_balance_wei=self.native_balance.get(chain),
            pnl_today_wei=self.pnl_today.get(chain, 0),
        )

    # -- reads ---------------------------------------------------------------------------------

    def is_blocked(self, chain: str, kind: BlockKind, address: str) -> bool:
        """For strategies: skip paths through blocklisted tokens or pools (any address case)."""
        now = _now()
        checksummed = parse_address("address", address)
        return any(
            e.kind == kind and e.active(now) and e.matches(chain, checksummed)
            for e in self.blocklist
        )

    def active_blocklist(self) -> list[BlockEntry]:
        now = _now()
        return [e for e in self.blocklist if e.active(now)]

    def check(self, candidate: Candidate, *, replacing: bool = False) -> RiskDecision:
        """The risk gate for ``candidate``; ``replacing``: it takes the place of a trade in
        flight at the same nonce, so that trade does not count against ``max_in_flight``."""
        limits = self.limits.get(candidate.chain)
        if limits is None:
            return RiskDecision(False, f"no chain named {candidate.chain!r}")
        status = self.status(candidate.chain)
        if replacing:
            status = replace(status, in_flight=max(0, status.in_flight - 1))
        return evaluate(
            mode=self.mode,
            kill_switch=self.kill_switch or not self.gate.is_open,
            limits=limits,
            blocklist=self.blocklist,
            status=status,
            candidate=candidate,
            now=_now(),
        )

    def snapshot(self) -> dict[str, Any]:
        """The document GET /api/trading/state serves (wei amounts as decimal strings)."""
        chains: dict[str, Any] = {}
        for name, limits in self.limits.items():
            status = self.status(name)
            paused = paused_reason(limits, status)
            balance = status.native_balance_wei
            inventory = self.executor_balance.get(name)
            chains[name] = {
                "limits": limits.to_json(),
                "in_flight": status.in_flight,
                "native_symbol": self.symbols.get(name, "native"),
                "native_balance_wei": None if balance is None else str(balance),
                "executor_balance_wei": None if inventory is None else str(inventory),
                "balance_floor_wei": {
                    role: str(self.balance_floor(name, role)) for role in BALANCE_ROLES
                },
                "balance_low": [role for role, _, _ in self.low_balances(name)],
                "pnl_today_wei": str(status.pnl_today_wei),
                "paused": paused is not None,
                "paused_reason": paused,
            }
        by_symbol: dict[str, int] = {}
        for name in self.limits:
            symbol = self.symbols.get(name, "native")
            by_symbol[symbol] = by_symbol.get(symbol, 0) + self.pnl_today.get(name, 0)
        return {
            "mode": self.mode,
            "auto_execute": self.auto_execute,
            "kill_switch": self.kill_switch,
            "kill_reason": self.kill_reason,
            "chains": chains,
            "blocklist": [e.to_json() for e in self.active_blocklist()],
            "pnl_day": self.pnl_day,
            "pnl_today": {
                name: {"wei": chain["pnl_today_wei"], "symbol": chain["native_symbol"]}
                for name, chain in chains.items()
            },
            "pnl_today_by_symbol": {k: str(v) for k, v in sorted(by_symbol.items())},
            # A total only where every chain counts in one currency: ETH and POL do not add up.
            "pnl_today_wei": str(sum(by_symbol.values())) if len(by_symbol) == 1 else None,
            "pnl_today_symbol": next(iter(by_symbol)) if len(by_symbol) == 1 else None,
        }


def with_limits(limits: ChainLimits, **changes: object) -> ChainLimits:
    """Convenience for callers building limits in code (validated like an API change)."""
    return replace(limits.updated(changes))
