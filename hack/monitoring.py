"""The kustomize monitoring variant from the chart's files: `python hack/monitoring.py write|check`.

The chart's files/alerts.yaml and files/dashboard.json are the one source; kustomize cannot read
files outside its folder, so manifests/monitoring carries generated copies, checked current by the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART_FILES = ROOT / "manifests" / "helm" / "mailrelay-operator" / "files"
TARGET = ROOT / "manifests" / "monitoring"
HEADER = "# Generated from manifests/helm/mailrelay-operator/files/alerts.yaml by `make docs`; edit that file.\n"


def prometheus_rule() -> str:
    groups = yaml.safe_load((CHART_FILES / "alerts.yaml").read_text())
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mailrelay-operator",
            "namespace": "mailrelay-system",
            "labels": {"app.kubernetes.io/name": "mailrelay-operator"},
        },
        "spec": groups,
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=120)


def files() -> dict[Path, str]:
    return {
        TARGET / "prometheusrule.yaml": prometheus_rule(),
        TARGET / "dashboard.json": (CHART_FILES / "dashboard.json").read_text(),
    }


def main(argv: list[str]) -> int:
    stale = [path for path, text in files().items() if not path.exists() or path.read_text() != text]
    if argv[1:] == ["write"]:
        for path in stale:
            path.write_text(files()[path])
        return 0
    for path in stale:
        print(f"{path.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
