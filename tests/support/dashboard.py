"""The monitoring the chart ships, as Helm renders it, and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from support.paths import CHART
from support.tools import objects, run

ENABLED = [
    "--set",
    "monitoring.podMonitors.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
]
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}


def helm(tools: Path, *args: str) -> list[dict[str, Any]]:
    return objects(run(tools, "helm", "template", "mr", str(CHART), "--namespace", "mailrelay-system", *args))


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if not following.startswith("(") and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def dashboard(tools: Path) -> dict[str, Any]:
    [config_map] = [
        d for d in helm(tools, *ENABLED) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    parsed: dict[str, Any] = json.loads(config_map["data"]["mailrelay.json"])
    return parsed


def dashboard_metrics(board: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs and all(exprs)
    return set().union(*(queried_metrics(e) for e in exprs))
