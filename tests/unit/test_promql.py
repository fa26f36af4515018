"""The PromQL reader the dashboard and alert checks rely on finds metric names only."""

from __future__ import annotations

from support.dashboard import queried_metrics


def test_the_expression_reader_finds_metrics_only() -> None:
    assert queried_metrics('histogram_quantile(0.95, sum by (le, trigger) (rate(a_bucket{x="y"}[5m]))) / b') == {
        "a_bucket",
        "b",
    }
