"""Event bus: one interface, an in-process implementation and a Redis implementation.

``open_bus(url)`` picks the implementation from the ``[bus] url`` of the config:
``memory://`` (default) or ``redis://host:port/db`` (``rediss://`` for TLS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mevstack.bus.base import (
    Bus,
    BusError,
    ReplayGap,
    Subscription,
    SubscriptionClosed,
    SubscriptionOverflow,
    SubscriptionStats,
)
from mevstack.bus.memory import MemoryBus
from mevstack.bus.redis import RedisBus

__all__ = [
    "Bus",
    "BusError",
    "MemoryBus",
    "RedisBus",
    "ReplayGap",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionOverflow",
    "SubscriptionStats",
    "open_bus",
]


def open_bus(url: str, **options: Any) -> Bus:
    """The bus for ``url``; ``options`` (``replay_size``, ``namespace``...) go to its class."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryBus(**options)
    if scheme in ("redis", "rediss", "unix"):
        return RedisBus(url, **options)
    from mevstack.obs.log import redact_text

    raise BusError(
        f"unsupported bus URL {redact_text(url)!r} (use memory:// or redis://host:port/db)"
    )
