"""Percentiles and summaries, with the unit in every name (``p99_ttft_ms``), as vLLM does."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["PERCENTILES", "describe", "mean", "percentile", "ratio"]

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics.

    The same definition as ``numpy.percentile``'s default ("linear"): position ``(n-1)*q/100``
    in the sorted values. Raises ``ValueError`` on no values or q outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(ordered[lo])
    frac = pos - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, or None for no values."""
    return float(sum(values) / len(values)) if values else None


def describe(values: Iterable[float | None], name: str) -> dict[str, float | int | None]:
    """Flat summary of ``values`` under ``name`` (which carries the unit, e.g. ``ttft_ms``).

    Returns ``n_<name>``, ``mean_<name>``, ``min_<name>``, ``p50_<name>``, ``p90_<name>``,
    ``p99_<name>``, ``max_<name>``; None values are dropped and every statistic of an empty
    list is None.
    """
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    out: dict[str, float | int | None] = {f"n_{name}": len(vals), f"mean_{name}": mean(vals)}
    out[f"min_{name}"] = min(vals) if vals else None
    for q in PERCENTILES:
        out[f"p{q:g}_{name}"] = percentile(vals, q) if vals else None
    out[f"max_{name}"] = max(vals) if vals else None
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)
