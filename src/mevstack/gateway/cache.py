"""The gateway's cache of GET answers: short per-path TTLs, stale-while-revalidate, last good.

Pure bookkeeping (no I/O): the gateway decides what to do from :meth:`ResponseCache.lookup`.

* ``fresh`` — younger than the path's TTL: serve it;
* ``revalidate`` — older than the TTL but inside the stale-while-revalidate window: serve it and
  refresh in the background;
* ``expired`` — kept only as the *last good answer*, served (marked ``meta.stale = true`` with
  ``meta.age_s``) when no backend answers; never invented, never served as fresh.

Only 200 answers are stored.  The cache is bounded (least recently stored entries go first).

A successful write drops the answers it affects (:func:`affected_prefixes`, then
:meth:`ResponseCache.invalidate`), and bumps an epoch so that a read which was already on its
way to an engine before the write cannot store its now outdated answer afterwards.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import orjson

# Seconds an answer counts as fresh, by path prefix (longest prefix wins).
DEFAULT_TTLS: dict[str, float] = {
    "/api/nodes": 1.0,
    "/api/gas": 1.0,
    "/api/mev/opportunities": 1.0,
    "/api/mev/metrics": 2.0,
    "/api/trades": 1.0,
    "/api/trading/state": 1.0,
    "/api/agents": 1.0,
    "/api/exploits": 2.0,
    "/openapi.json": 60.0,
}
DEFAULT_TTL_S = 1.0
DEFAULT_SWR_S = 2.0

Freshness = Literal["fresh", "revalidate", "expired"]

# What a write changes besides its own resource (the first path segment below /api).
_ALSO_AFFECTED: dict[str, tuple[str, ...]] = {
    "/api/mev": ("/api/trades", "/api/trading/state"),
}


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    status: int
    body: bytes
    content_type: str
    stored_at: float  # monotonic seconds
    source: str  # which backend gave it

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)


def cache_key(path: str, query: str) -> str:
    if not query:
        return path
    pairs = sorted(query.split("&"))
    return f"{path}?{'&'.join(pairs)}"


def affected_prefixes(path: str) -> tuple[str, ...]:
    """The cached paths a successful write to ``path`` makes outdated (prefixes)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "api" or not parts[2]:
        return ()
    root = f"/api/{parts[2]}"
    return (root, *_ALSO_AFFECTED.get(root, ()))


def key_under(key: str, prefix: str) -> bool:
    path = key.partition("?")[0]
    return path == prefix or path.startswith(prefix + "/")


def mark_stale(body: bytes, age_s: float) -> bytes | None:
    """The envelope with ``meta.stale = true`` and ``meta.age_s``; None if it is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict):
        return None
    doc["meta"] = {**doc["meta"], "stale": True, "age_s": round(age_s, 3)}
    return orjson.dumps(doc)


class ResponseCache:
    def __init__(
        self,
        *,
        ttls: Mapping[str, float] | None = None,
        default_ttl_s: float = DEFAULT_TTL_S,
        swr_s: float = DEFAULT_SWR_S,
        max_entries: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttls = dict(DEFAULT_TTLS if ttls is None else ttls)
        self._prefixes = sorted(self.ttls, key=len, reverse=True)
        self.default_ttl_s = default_ttl_s
        self.swr_s = swr_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self.epoch = 0

    def ttl(self, path: str) -> float:
        for prefix in self._prefixes:
            if key_under(path, prefix):
                return self.ttls[prefix]
        return self.default_ttl_s

    def lookup(self, key: str, path: str) -> tuple[CachedAnswer, Freshness] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = entry.age(self.clock())
        ttl = self.ttl(path)
        if age < ttl:
            return entry, "fresh"
        if age < ttl + self.swr_s:
            return entry, "revalidate"
        return entry, "expired"

    def store(
        self,
        key: str,
        status: int,
        body: bytes,
        content_type: str,
        source: str,
        *,
        epoch: int | None = None,
    ) -> None:
        """Keep a 200 answer; ``epoch`` (when the read started) drops it if a write came since."""
        if status != 200 or (epoch is not None and epoch != self.epoch):
            return
        self._entries.pop(key, None)
        self._entries[key] = CachedAnswer(status, body, content_type, self.clock(), source)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, prefixes: tuple[str, ...]) -> int:
        """Forget every answer under one of ``prefixes``; the number forgotten."""
        if not prefixes:
            return 0
        self.epoch += 1
        doomed = [k for k in self._entries if any(key_under(k, p) for p in prefixes)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)
