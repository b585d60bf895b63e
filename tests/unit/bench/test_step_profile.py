"""bench.step_profile's breakdown of a step, on recorded timings."""

from __future__ import annotations

import pytest
from bench.step_profile import StepClock


def test_summary_splits_a_step_and_counts_only_steps_of_n_rows() -> None:
    clock = StepClock()
    ms = 1_000_000
    clock.steps = [(4, 30 * ms, 25 * ms, 3 * ms, 0), (4, 32 * ms, 26 * ms, 4 * ms, 1 * ms),
                   (-(1 << 30), 90 * ms, 80 * ms, 0, 1 * ms), (3, 20 * ms, 18 * ms, 1 * ms, ms)]
    s = clock.summary(4)
    assert s["steps"] == 2
    assert s["step_ms"]["mean"] == pytest.approx(31.0)
    assert s["decode_ms"]["mean"] == pytest.approx(25.5)
    assert s["sample_ms"]["mean"] == pytest.approx(3.5)
    assert s["other_ms"]["mean"] == pytest.approx(2.0)
    assert s["between_ms"]["mean"] == pytest.approx(1.0)  # the first step has no gap
    assert clock.summary(8) == {"steps": 0}
