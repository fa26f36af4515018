"""kstatus's generic rules for a custom resource, as Flux and `kubectl wait`-style tools apply them."""

from __future__ import annotations

from typing import Any


def kstatus(obj: dict[str, Any]) -> str:
    """The generic kstatus rules Flux and Argo CD apply to a custom resource with conditions."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if conditions.get("Ready", {}).get("status") == "False":
        return "InProgress"
    return "Current"
