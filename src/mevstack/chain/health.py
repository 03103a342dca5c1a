"""Endpoint health scoring: pure logic over plain numbers, no I/O and no clock of its own.

Owns the rules that decide, for one chain's endpoints, which state each is in
(``ok | lagging | syncing | down | wrong_chain``), which one is primary, and in what order reads
try them.  Callers feed it probe observations and call samples, with times passed in, so every
rule is testable with numbers alone.

* **Consensus tip**: the head that the largest group of endpoints agrees on (heads within
  ``agree_blocks`` of each other form a group; ties go to the higher group, because a live node
  running ahead is likelier than several stuck ones).  With three or more endpoints one bogus tip
  cannot evict the rest; with two there is no majority, and the higher head wins.
* **Lag** is measured against that tip, in blocks and in seconds of block timestamp, so an idle
  automining devnet (no new blocks for minutes) is not "lagging".
* **Error rate** over a rolling window of call outcomes counts only once ``min_samples`` exist.
* **Hysteresis**: an excluded endpoint needs ``readmit_after`` consecutive good probes to come
  back (and starts with a fresh window); the primary only changes when it is no longer ok, or a
  challenger has scored better by ``switch_margin`` for ``switch_after`` evaluations in a row.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

NodeState = Literal["ok", "lagging", "syncing", "down", "wrong_chain"]
_STATE_RANK: dict[str, int] = {"ok": 0, "lagging": 1, "syncing": 2, "down": 3, "wrong_chain": 4}


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    block_time: float = 12.0
    window: int = 100
    min_samples: int = 20
    max_error_rate: float = 0.25
    max_lag_blocks: int = 3
    max_lag_seconds: float | None = None  # None: 3 block times
    agree_blocks: int = 2
    readmit_after: int = 2
    switch_margin_ms: float = 20.0
    switch_after: int = 5

    @property
    def lag_seconds_limit(self) -> float:
        if self.max_lag_seconds is not None:
            return self.max_lag_seconds
        return 3.0 * self.block_time


@dataclass(frozen=True, slots=True)
class Head:
    number: int
    timestamp: int


def consensus_tip(heads: list[Head], agree_blocks: int = 2) -> Head | None:
    """The newest head of the largest group of heads that agree within ``agree_blocks``."""
    best: tuple[int, int] | None = None
    best_head: Head | None = None
    for top in heads:
        members = sum(1 for h in heads if top.number - agree_blocks <= h.number <= top.number)
        key = (members, top.number)
        if best is None or key > best:
            best, best_head = key, top
    return best_head


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


@dataclass
class RollingStats:
    """Outcome and latency of the last ``size`` calls of one endpoint."""

    size: int = 100
    _samples: deque[tuple[bool, float]] = field(default_factory=deque)

    def add(self, ok: bool, latency_ms: float) -> None:
        self._samples.append((ok, latency_ms))
        while len(self._samples) > self.size:
            self._samples.popleft()

    def clear(self) -> None:
        self._samples.clear()

    @property
    def count(self) -> int:
        return len(self._samples)

    @property
    def error_rate(self) -> float:
        if not self._samples:
            return 0.0
        return sum(1 for ok, _ in self._samples if not ok) / len(self._samples)

    def latency_ms(self, fraction: float) -> float | None:
        return percentile(sorted(ms for ok, ms in self._samples if ok), fraction)


@dataclass
class EndpointHealth:
    """Everything known about one endpoint; mutated only through the methods below."""

    expected_chain_id: int
    policy: HealthPolicy
    stats: RollingStats = field(init=False)
    chain_id: int | None = None
    head: Head | None = None
    syncing: bool = False
    peers: int | None = None
    wrong_chain: bool = False
    excluded: bool = True  # nothing is trusted before its first good probe
    good_probes: int = 0
    admitted_once: bool = False
    last_error: str | None = None
    lag_blocks: int = 0
    lag_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.stats = RollingStats(self.policy.window)

    def record_call(self, ok: bool, latency_ms: float, error: str | None = None) -> None:
        self.stats.add(ok, latency_ms)
        if not ok:
            self.last_error = error
            if self.stats.count >= self.policy.min_samples and (
                self.stats.error_rate > self.policy.max_error_rate
            ):
                self.exclude(error or "error rate too high")

    def exclude(self, reason: str) -> None:
        self.excluded = True
        self.good_probes = 0
        self.last_error = reason

    def record_probe_failure(self, reason: str, latency_ms: float) -> None:
        self.stats.add(False, latency_ms)
        self.exclude(reason)

    def record_probe(
        self,
        *,
        chain_id: int,
        head: Head,
        syncing: bool,
        peers: int | None,
        latency_ms: float,
    ) -> None:
        self.chain_id = chain_id
        if chain_id != self.expected_chain_id:
            # Sticky: a node serving another chain is a configuration error, not a hiccup.
            self.wrong_chain = True
        self.head = head
        self.syncing = syncing
        self.peers = peers
        self.stats.add(True, latency_ms)
        if self.excluded:
            self.good_probes += 1
            # The first admission is immediate; only a return after exclusion is on probation.
            needed = self.policy.readmit_after if self.admitted_once else 1
            if self.good_probes >= needed:
                self.excluded = False
                self.admitted_once = True
                self.stats.clear()
                self.stats.add(True, latency_ms)

    def update_lag(self, tip: Head | None) -> None:
        if tip is None or self.head is None:
            self.lag_blocks, self.lag_seconds = 0, 0.0
            return
        self.lag_blocks = max(0, tip.number - self.head.number)
        self.lag_seconds = float(max(0, tip.timestamp - self.head.timestamp))

    @property
    def state(self) -> NodeState:
        if self.wrong_chain:
            return "wrong_chain"
        if self.excluded or self.head is None:
            return "down"
        if self.syncing:
            return "syncing"
        if (
            self.lag_blocks > self.policy.max_lag_blocks
            or self.lag_seconds > self.policy.lag_seconds_limit
        ):
            return "lagging"
        return "ok"

    @property
    def score(self) -> float:
        """Lower is better: median latency, penalised by errors and lag."""
        p50 = self.stats.latency_ms(0.5) or 0.0
        return p50 + 1000.0 * self.stats.error_rate + 50.0 * self.lag_blocks


@dataclass
class PrimaryElection:
    """Chooses the primary among endpoint indexes with hysteresis (see module docstring)."""

    policy: HealthPolicy
    primary: int | None = None
    _challenger: int | None = None
    _challenger_wins: int = 0

    def evaluate(self, endpoints: list[EndpointHealth]) -> int | None:
        ok = [i for i, e in enumerate(endpoints) if e.state == "ok"]
        if not ok:
            fallback = [i for i, e in enumerate(endpoints) if e.state in ("lagging", "syncing")]
            self.primary = min(fallback, key=lambda i: endpoints[i].score) if fallback else None
            self._challenger, self._challenger_wins = None, 0
            return self.primary
        best = min(ok, key=lambda i: endpoints[i].score)
        if self.primary not in ok:
            self.primary = best
            self._challenger, self._challenger_wins = None, 0
            return self.primary
        assert self.primary is not None
        margin = endpoints[self.primary].score - endpoints[best].score
        if best != self.primary and margin > self.policy.switch_margin_ms:
            if self._challenger == best:
                self._challenger_wins += 1
            else:
                self._challenger, self._challenger_wins = best, 1
            if self._challenger_wins >= self.policy.switch_after:
                self.primary = best
                self._challenger, self._challenger_wins = None, 0
        else:
            self._challenger, self._challenger_wins = None, 0
        return self.primary


def read_order(endpoints: list[EndpointHealth], primary: int | None) -> list[int]:
    """Indexes to try for a read: primary, other ok ones by score, then the rest.

    Only endpoints whose chain id has been verified by a probe are ever used: one that was never
    reached may be serving another chain.

    Down endpoints come last rather than never: when every endpoint looks down a read is still
    worth one attempt, because probes can be a moment out of date.
    """
    usable = [
        i
        for i, e in enumerate(endpoints)
        if e.state != "wrong_chain" and e.chain_id == e.expected_chain_id
    ]
    usable.sort(key=lambda i: (i != primary, _STATE_RANK[endpoints[i].state], endpoints[i].score))
    return usable
