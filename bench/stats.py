"""Order statistics for benchmark figures: a median alone hides how much a figure moves between rounds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} outside [0, 1]")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, IQR, min and max: what a reader needs to judge whether two figures differ."""
    q1, q3 = percentile(values, 0.25), percentile(values, 0.75)
    return {
        "n": len(values),
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": min(values),
        "max": max(values),
    }


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and the largest of per-object latencies."""
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values), "n": len(values)}
