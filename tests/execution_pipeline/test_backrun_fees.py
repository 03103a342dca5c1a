"""The fees the strategy ranks a backrun with are the ones the pipeline gives it."""

from __future__ import annotations

import pytest

from mevstack.execution.simulate import TxRequest
from mevstack.execution.trigger import backrun_fees, planned_backrun_fees

GWEI = 10**9


def pipeline_fees(trigger: TxRequest, *, base_fee: int, tip: int) -> tuple[int, int]:
    """What ``Pipeline.execute`` does: the tip first, then ``prepare_execute``'s fee cap
    (2 × base fee + tip), each bounded by the trigger's."""
    _, priority = backrun_fees(trigger, max_fee=trigger.max_fee_per_gas, priority_fee=tip)
    cap, _ = backrun_fees(trigger, max_fee=2 * base_fee + priority, priority_fee=priority)
    return cap, priority


@pytest.mark.parametrize(
    ("trigger_cap", "trigger_tip", "base_fee", "tip"),
    [
        (500 * GWEI, 50 * GWEI, GWEI, GWEI),  # a generous trigger: the backrun pays less
        (GWEI + 7, GWEI, 7, GWEI),  # the demo's: base fee at its floor, caps level
        (30 * GWEI, 2 * GWEI, 20 * GWEI, 3 * GWEI),  # the tip is capped by the trigger's
        (10 * GWEI, 0, 9 * GWEI, GWEI),  # a trigger that tips nothing
    ],
)
def test_planned_fees_are_the_pipelines(
    trigger_cap: int, trigger_tip: int, base_fee: int, tip: int
) -> None:
    trigger = TxRequest("0x" + "11" * 20, "0x" + "22" * 20, b"", 21_000, trigger_cap, trigger_tip)
    planned = planned_backrun_fees(trigger_cap, trigger_tip, base_fee=base_fee, tip=tip)
    assert planned == pipeline_fees(trigger, base_fee=base_fee, tip=tip)
    cap, priority = planned
    assert cap <= trigger_cap and priority <= trigger_tip
