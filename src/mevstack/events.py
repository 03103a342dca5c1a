"""The event envelope every part of mevstack publishes on the bus, and the event names.

Names and the envelope shape are a public contract (docs/contracts.md, WebSocket section): the bus
stamps ``seq`` (one increasing sequence per bus) and ``ts``; producers give name, chain and data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventName(StrEnum):
    BLOCK_NEW = "block.new"
    CHAIN_REORG = "chain.reorg"
    NODE_STATUS = "node.status"
    GAS_PRICE = "gas.price"
    MEV_OPPORTUNITY = "mev.opportunity"
    TRADE_SUBMITTED = "trade.submitted"
    TRADE_INCLUDED = "trade.included"
    TRADE_FAILED = "trade.failed"
    AGENT_STATUS = "agent.status"
    EXPLOIT_ALERT = "exploit.alert"


EVENT_NAMES: frozenset[str] = frozenset(e.value for e in EventName)


def utc_now_iso() -> str:
    """ISO-8601 UTC with millisecond precision and a trailing Z, as every JSON time field uses."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Event(BaseModel):
    """One published event, as a WebSocket client receives it (minus ``type``)."""

    model_config = ConfigDict(frozen=True)

    event: EventName
    seq: int = Field(ge=1)
    ts: str
    chain: str | None = None
    data: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "event",
            "event": self.event.value,
            "seq": self.seq,
            "ts": self.ts,
            "chain": self.chain,
            "data": self.data,
        }
