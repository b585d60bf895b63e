"""Percentiles and summaries of the bench harness."""

from __future__ import annotations

import math
import random

import pytest
from bench.stats import describe, mean, percentile, ratio


def _numpy_linear(values: list[float], q: float) -> float:
    """Reference: numpy.percentile's default method, written out."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def test_percentile_known_values() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile(xs, 99) == pytest.approx(3.97)


def test_percentile_single_value_and_exact_rank() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 25) == 2.0


def test_percentile_matches_reference_on_random_data() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101):
        xs = [rng.uniform(0, 100) for _ in range(n)]
        for q in (0, 1, 50, 90, 99, 100):
            assert percentile(xs, q) == pytest.approx(_numpy_linear(xs, q))


def test_percentile_rejects_empty_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -1)


def test_percentile_does_not_reorder_input() -> None:
    xs = [3.0, 1.0, 2.0]
    percentile(xs, 50)
    assert xs == [3.0, 1.0, 2.0]


def test_describe_names_carry_units_and_drop_none() -> None:
    d = describe([10.0, None, 20.0, 30.0, float("nan")], "ttft_ms")
    assert d["n_ttft_ms"] == 3
    assert d["mean_ttft_ms"] == pytest.approx(20.0)
    assert d["min_ttft_ms"] == 10.0
    assert d["max_ttft_ms"] == 30.0
    assert d["p50_ttft_ms"] == 20.0
    assert d["p90_ttft_ms"] == pytest.approx(28.0)
    assert d["p99_ttft_ms"] == pytest.approx(29.8)
    assert set(d) == {
        "n_ttft_ms",
        "mean_ttft_ms",
        "min_ttft_ms",
        "p50_ttft_ms",
        "p90_ttft_ms",
        "p99_ttft_ms",
        "max_ttft_ms",
    }


def test_describe_empty_is_all_none() -> None:
    d = describe([], "itl_ms")
    assert d["n_itl_ms"] == 0
    assert all(v is None for k, v in d.items() if k != "n_itl_ms")


def test_mean_and_ratio() -> None:
    assert mean([]) is None
    assert mean([1, 2, 3]) == 2.0
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(1.0, None) is None
