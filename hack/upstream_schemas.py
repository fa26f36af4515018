"""Upstream Kubernetes shapes (Affinity, TopologySpreadConstraint, ...) as self-contained schemas.

The operator's own validation (operator/mailrelay/api/pod_schema.json), and through it the MailRelay
CRD (hack/crd/schema.py `upstream`), and the chart's values.schema.json take these shapes from the
upstream OpenAPI definitions that kubernetes-validate ships; `make schemas` (this script with `write`,
then `make generate`) rewrites all of them, and tests/packaging/test_packaging.py fails when one is
out of date.

References are inlined and descriptions dropped (the upstream API reference has them); the result
is a structural schema as CRDs need it. A few upstream rules that the OpenAPI definitions only state
in prose (operator enums, weight ranges) are added, so a typo is refused before the Deployment is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate

ROOT = Path(__file__).resolve().parents[1]
POD_SCHEMA = ROOT / "operator" / "mailrelay" / "api" / "pod_schema.json"
VALUES_SCHEMA = ROOT / "manifests" / "helm" / "mailrelay-operator" / "values.schema.json"

# The newest release the project supports: every field of these shapes exists there; an older API
# server drops a field it does not know, as it would in a Deployment applied by hand.
SHAPE_VERSION = "1.35.0"
SHAPES = {
    "affinity": "io.k8s.api.core.v1.Affinity",
    "topologySpreadConstraint": "io.k8s.api.core.v1.TopologySpreadConstraint",
    "toleration": "io.k8s.api.core.v1.Toleration",
    "resources": "io.k8s.api.core.v1.ResourceRequirements",
    "podSecurityContext": "io.k8s.api.core.v1.PodSecurityContext",
    "securityContext": "io.k8s.api.core.v1.SecurityContext",
    "envVar": "io.k8s.api.core.v1.EnvVar",
}
_SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"]
# (definition, property) → constraints upstream states only in prose.
EXTRA: dict[tuple[str, str], dict[str, Any]] = {
    ("LabelSelectorRequirement", "operator"): {"enum": _SELECTOR_OPERATORS},
    ("NodeSelectorRequirement", "operator"): {"enum": [*_SELECTOR_OPERATORS, "Gt", "Lt"]},
    ("PreferredSchedulingTerm", "weight"): {"minimum": 1, "maximum": 100},
    ("WeightedPodAffinityTerm", "weight"): {"minimum": 1, "maximum": 100},
    ("TopologySpreadConstraint", "maxSkew"): {"minimum": 1},
    ("TopologySpreadConstraint", "minDomains"): {"minimum": 1},
    ("TopologySpreadConstraint", "whenUnsatisfiable"): {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
    ("TopologySpreadConstraint", "nodeAffinityPolicy"): {"enum": ["Honor", "Ignore"]},
    ("TopologySpreadConstraint", "nodeTaintsPolicy"): {"enum": ["Honor", "Ignore"]},
    ("Toleration", "operator"): {"enum": ["Equal", "Exists"]},
    ("Toleration", "effect"): {"enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]},
}
_KEEP = ("required", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type")


def definitions(version: str = SHAPE_VERSION) -> dict[str, Any]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    return dict(json.loads((root / "_definitions.json").read_text())["$defs"])


def _type(node: dict[str, Any]) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def convert(defs: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The definition `name` with references inlined, as a structural schema."""
    if name in seen:
        raise ValueError(f"recursive definition {name}")
    return _node(defs, defs[name], name.rsplit(".", 1)[-1], (*seen, name))


def _node(defs: dict[str, Any], node: dict[str, Any], owner: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if "$ref" in node:
        return convert(defs, node["$ref"].rsplit("/", 1)[-1], seen)
    if "oneOf" in node:  # Quantity and IntOrString: a string or a number
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    out: dict[str, Any] = {}
    kind = _type(node)
    if kind == "number":
        kind = "integer"
    if kind:
        out["type"] = kind
    if "properties" in node:
        out["properties"] = {}
        for key, sub in sorted(node["properties"].items()):
            converted = _node(defs, sub, owner, seen)
            converted.update(EXTRA.get((owner, key), {}))
            out["properties"][key] = converted
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _node(defs, node["additionalProperties"], owner, seen)
    if "items" in node:
        out["items"] = _node(defs, node["items"], owner, seen)
    if "enum" in node:
        out["enum"] = [v for v in node["enum"] if v is not None]
    for key in _KEEP:
        if key in node:
            out[key] = node[key]
    return out


def shapes(version: str = SHAPE_VERSION) -> dict[str, Any]:
    defs = definitions(version)
    return {"version": version, **{key: convert(defs, name) for key, name in SHAPES.items()}}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def json_schema(node: Any) -> Any:
    """A structural schema as plain JSON Schema for Helm: quantities may be numbers, no unknown fields."""
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        return {"type": ["string", "number"]}
    out = {
        k: json_schema(v) if k in ("items", "additionalProperties") else v
        for k, v in node.items()
        if not k.startswith("x-kubernetes-")
    }
    if "properties" in node:
        out["properties"] = {k: json_schema(v) for k, v in node["properties"].items()}
        out["additionalProperties"] = False
    return out


def update_values_schema(text: str, found: dict[str, Any]) -> str:
    schema = json.loads(text)
    schema["definitions"] = {key: json_schema(value) for key, value in found.items() if key != "version"}
    return json.dumps(schema, indent=2) + "\n"


def write() -> None:
    found = shapes()
    POD_SCHEMA.write_text(dump_json(found))
    VALUES_SCHEMA.write_text(update_values_schema(VALUES_SCHEMA.read_text(), found))


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: upstream_schemas.py write")
    write()
