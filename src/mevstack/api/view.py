"""What the engine API reads from and asks of the running engine: the ``EngineView`` Protocol.

The REST layer knows nothing about chains, pools or executors; it calls these methods and wraps
the answers.  The engine runtime implements the Protocol; until a feature exists, its method
raises :class:`NotAvailable` and the API answers 503 with that message (never invented data).
:class:`UnavailableView` is the starting point: every feature says plainly it is not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mevstack.errors import MevstackError

JsonObject = dict[str, Any]


class NotAvailable(MevstackError):
    """The feature behind an endpoint is not running (HTTP 503, code ``not_available``)."""


class NotFound(MevstackError):
    """The requested object does not exist (HTTP 404, code ``not_found``)."""


class Conflict(MevstackError):
    """The request conflicts with the current state (HTTP 409, code ``conflict``)."""


class BadRequest(MevstackError):
    """The request is well-formed but its values are not acceptable (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated list; ``next_cursor`` is None on the last page."""

    items: list[JsonObject]
    next_cursor: str | None


class EngineView(Protocol):
    """The engine as the API sees it; every method may raise NotAvailable."""

    @property
    def source(self) -> str:
        """Names the engine replica in ``meta.source`` (e.g. ``engine@host:8082``)."""
        ...

    def health(self) -> JsonObject:
        """Extra /health fields of this replica (role, lease holder...)."""
        ...

    def nodes(self) -> list[JsonObject]: ...

    def gas(self) -> list[JsonObject]: ...

    async def opportunities(
        self, *, chain: str | None, kind: str | None, status: str | None, limit: int
    ) -> list[JsonObject]:
        """Newest first."""
        ...

    async def opportunity(self, opportunity_id: str) -> JsonObject:
        """Raises NotFound."""
        ...

    async def execute(self, opportunity_id: str, idempotency_key: str | None) -> JsonObject:
        """The Trade for the opportunity; at most one active trade per opportunity."""
        ...

    async def metrics_summary(self) -> JsonObject: ...

    async def trades(
        self, *, chain: str | None, status: str | None, cursor: str | None, limit: int
    ) -> Page: ...

    async def trade(self, trade_id: str) -> JsonObject:
        """Raises NotFound."""
        ...

    async def trading_state(self) -> JsonObject: ...

    async def patch_trading_state(self, changes: JsonObject) -> JsonObject: ...

    async def agents(self) -> list[JsonObject]: ...

    async def set_agent_running(self, agent_id: str, running: bool) -> JsonObject: ...

    async def exploits(self) -> list[JsonObject]: ...

    async def add_exploit(self, alert: JsonObject) -> JsonObject: ...


def _missing(feature: str) -> NotAvailable:
    return NotAvailable(f"{feature} is not built yet")


class UnavailableView:
    """An engine with no features running: every data method raises NotAvailable."""

    def __init__(self, source: str = "engine") -> None:
        self._source = source

    @property
    def source(self) -> str:
        return self._source

    def health(self) -> JsonObject:
        return {}

    def nodes(self) -> list[JsonObject]:
        raise _missing("node monitoring")

    def gas(self) -> list[JsonObject]:
        raise _missing("the gas model")

    async def opportunities(
        self, *, chain: str | None, kind: str | None, status: str | None, limit: int
    ) -> list[JsonObject]:
        raise _missing("the opportunity store")

    async def opportunity(self, opportunity_id: str) -> JsonObject:
        raise _missing("the opportunity store")

    async def execute(self, opportunity_id: str, idempotency_key: str | None) -> JsonObject:
        raise _missing("execution")

    async def metrics_summary(self) -> JsonObject:
        raise _missing("engine metrics")

    async def trades(
        self, *, chain: str | None, status: str | None, cursor: str | None, limit: int
    ) -> Page:
        raise _missing("the trade store")

    async def trade(self, trade_id: str) -> JsonObject:
        raise _missing("the trade store")

    async def trading_state(self) -> JsonObject:
        raise _missing("trading state")

    async def patch_trading_state(self, changes: JsonObject) -> JsonObject:
        raise _missing("trading state")

    async def agents(self) -> list[JsonObject]:
        raise _missing("strategy agents")

    async def set_agent_running(self, agent_id: str, running: bool) -> JsonObject:
        raise _missing("strategy agents")

    async def exploits(self) -> list[JsonObject]:
        raise _missing("exploit alerts")

    async def add_exploit(self, alert: JsonObject) -> JsonObject:
        raise _missing("exploit alerts")
