"""Health scoring rules with plain numbers: consensus tip, lag, error window, hysteresis."""

from __future__ import annotations

from mevstack.chain.health import (
    EndpointHealth,
    Head,
    HealthPolicy,
    PrimaryElection,
    RollingStats,
    consensus_tip,
    percentile,
    read_order,
)


def _state(e: EndpointHealth) -> str:
    return e.state  # a call, so mypy does not narrow the property between assertions


POLICY = HealthPolicy(block_time=2.0, min_samples=10, readmit_after=2, switch_after=3)


def _healthy(head: int, ts: int | None = None, latency: float = 1.0) -> EndpointHealth:
    e = EndpointHealth(1, POLICY)
    e.record_probe(
        chain_id=1,
        head=Head(head, ts if ts is not None else head * 2),
        syncing=False,
        peers=5,
        latency_ms=latency,
    )
    return e


def test_one_bogus_tip_cannot_evict_the_rest() -> None:
    heads = [Head(100, 200), Head(101, 202), Head(10**9, 2 * 10**9)]
    assert consensus_tip(heads) == Head(101, 202)
    endpoints = [_healthy(100), _healthy(101), _healthy(10**9)]
    tip = consensus_tip([e.head for e in endpoints if e.head])
    for e in endpoints:
        e.update_lag(tip)
    assert [e.state for e in endpoints] == ["ok", "ok", "ok"]


def test_consensus_majority_beats_a_stuck_minority_and_ties_go_high() -> None:
    assert consensus_tip([Head(50, 0), Head(200, 0), Head(201, 0)]) == Head(201, 0)
    assert consensus_tip([Head(50, 0), Head(200, 0)]) == Head(200, 0)
    assert consensus_tip([]) is None


def test_lag_in_blocks_and_in_seconds() -> None:
    tip = Head(110, 1000)
    behind = _healthy(106, 1000)
    behind.update_lag(tip)
    assert (behind.lag_blocks, behind.state) == (4, "lagging")
    within = _healthy(107, 1000)
    within.update_lag(tip)
    assert (within.lag_blocks, within.state) == (3, "ok")
    stale = _healthy(109, 1000 - 7)  # one block behind, but 7 s older than the tip (limit 6 s)
    stale.update_lag(tip)
    assert (stale.lag_seconds, stale.state) == (7.0, "lagging")


def test_error_rate_needs_minimum_samples_then_excludes() -> None:
    e = _healthy(10)
    e.update_lag(Head(10, 20))
    for _ in range(5):
        e.record_call(False, 1.0, "boom")
    assert _state(e) == "ok"  # 5 errors of 6 samples: below min_samples, not judged yet
    for _ in range(4):
        e.record_call(False, 1.0, "boom")
    assert e.stats.count == 10 and _state(e) == "down"


def test_readmission_needs_consecutive_good_probes_and_resets_window() -> None:
    e = _healthy(10)
    e.record_probe_failure("refused", 0.5)
    assert e.state == "down"
    e.record_probe(chain_id=1, head=Head(11, 22), syncing=False, peers=None, latency_ms=1.0)
    assert e.state == "down"
    e.record_probe_failure("refused", 0.5)
    e.record_probe(chain_id=1, head=Head(11, 22), syncing=False, peers=None, latency_ms=1.0)
    assert _state(e) == "down"
    e.record_probe(chain_id=1, head=Head(12, 24), syncing=False, peers=None, latency_ms=1.0)
    assert _state(e) == "ok" and e.stats.error_rate == 0.0


def test_wrong_chain_is_sticky_and_never_read() -> None:
    e = _healthy(10)
    e.record_probe(chain_id=5, head=Head(10, 20), syncing=False, peers=None, latency_ms=1.0)
    e.record_probe(chain_id=1, head=Head(10, 20), syncing=False, peers=None, latency_ms=1.0)
    assert e.state == "wrong_chain"
    assert read_order([e, _healthy(10)], None) == [1]


def test_syncing_state() -> None:
    e = _healthy(10)
    e.record_probe(chain_id=1, head=Head(10, 20), syncing=True, peers=None, latency_ms=1.0)
    assert e.state == "syncing"


def test_primary_has_hysteresis() -> None:
    a, b = _healthy(10, latency=40.0), _healthy(10, latency=45.0)
    election = PrimaryElection(POLICY)
    assert election.evaluate([a, b]) == 0
    for _ in range(40):
        b.record_call(True, 1.0)  # b is now clearly faster
    assert election.evaluate([a, b]) == 0
    assert election.evaluate([a, b]) == 0
    assert election.evaluate([a, b]) == 1  # third win in a row
    # a small edge inside the margin does not move it back
    for _ in range(100):
        a.record_call(True, 0.5)
    b.stats.clear()
    b.record_call(True, 15.0)  # a is only 14.5 ms better: inside the 20 ms margin
    for _ in range(5):
        assert election.evaluate([a, b]) == 1
    # a primary that goes down is replaced at once
    b.exclude("refused")
    assert election.evaluate([a, b]) == 0


def test_read_order_puts_primary_first_and_down_last() -> None:
    a, b, c = _healthy(10, latency=5.0), _healthy(10, latency=1.0), _healthy(10)
    c.exclude("refused")
    assert read_order([a, b, c], 0) == [0, 1, 2]
    assert read_order([a, b, c], None) == [1, 0, 2]


def test_rolling_window_and_percentiles() -> None:
    stats = RollingStats(size=4)
    for ms in (1.0, 2.0, 3.0, 4.0, 5.0):
        stats.add(True, ms)
    assert stats.count == 4 and stats.latency_ms(0.5) == 3.0 and stats.latency_ms(0.99) == 5.0
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.1) == 1.0
