"""Where the shipped artifacts live in this checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "mailrelay.dev_mailrelays.yaml"
CHART = ROOT / "manifests" / "helm" / "mailrelay-operator"
EXAMPLES = ROOT / "examples"
