"""The pod-level knobs of a MailRelay: pull secrets, scheduling, priority, extra labels and annotations.

Kept apart from spec.py because these are Kubernetes' own shapes rather than relay settings:
affinity and topology spread constraints are checked against the upstream schemas in
pod_schema.json (the same file the CRD embeds), labels and annotations with Kubernetes' key and
value syntax. Keys the operator relies on (the Service/Deployment selector, our annotations) are
refused, since a user value there would orphan the pods or hide a configuration change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

from mailrelay.api import grammar
from mailrelay.api.checker import KIND_NAMES, kind, quote
from mailrelay.api.labels import (
    check_affinity,
    check_spread,
    is_label_value,
    label_value_problem,
    qualified_name_problem,
)

MAX_PULL_SECRETS = 16
MAX_SPREAD_CONSTRAINTS = 8
MAX_POD_LABELS = 32
MAX_POD_ANNOTATIONS = 32
MAX_ANNOTATION_VALUE = 4096
POD_FIELDS = {
    "imagePullSecrets",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "podLabels",
    "podAnnotations",
}
# Label keys the operator sets on its pods; app.kubernetes.io/name and instance are the selector.
RESERVED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "pod-template-hash",
)
RESERVED_PREFIX = "mailrelay.dev/"


class Problems(Protocol):
    def fail(self, path: str, message: str) -> None: ...


@dataclass(frozen=True)
class PodSettings:
    image_pull_secrets: tuple[str, ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    priority_class_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)


@cache
def upstream_shapes() -> dict[str, Any]:
    """The upstream schemas the CRD embeds too (written by `make schemas`)."""
    return dict(json.loads(resources.files("mailrelay.api").joinpath("pod_schema.json").read_text()))


_PYTHON_TYPES: dict[str, type] = {"object": dict, "array": list, "string": str, "boolean": bool}


def conform(check: Problems, path: str, schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` fits a structural schema; each misfit is reported with its path."""
    problem = _scalar_problem(schema, value)
    if problem is not None:
        check.fail(path, problem)
        return False
    if isinstance(value, dict):
        return _conform_object(check, path, schema, value)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            check.fail(path, f"must have at most {schema['maxItems']} entries, got {len(value)}")
            return False
        items = schema.get("items", {})
        return all([conform(check, f"{path}[{i}]", items, item) for i, item in enumerate(value)])
    return True


def _scalar_problem(schema: dict[str, Any], value: Any) -> str | None:
    """What is wrong with `value`'s type, range or enum, if anything."""
    type_name = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        ok = not isinstance(value, bool) and isinstance(value, int | str)
        return None if ok else f"must be an integer or a string, got {kind(value)}"
    if type_name == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {kind(value)}"
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"must be from {low} to {high if high is not None else 'any'}, got {value}"
        return None
    expected = _PYTHON_TYPES.get(str(type_name))
    if expected is not None and not isinstance(value, expected):
        return f"must be {KIND_NAMES[expected]}, got {kind(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(map(repr, schema['enum']))}, got {quote(value)}"
    return None


def _conform_object(check: Problems, path: str, schema: dict[str, Any], value: dict[str, Any]) -> bool:
    known = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    ok = True
    for key in schema.get("required", []):
        if key not in value:
            check.fail(f"{path}.{key}", "is required")
            ok = False
    for key, item in value.items():
        if key in known:
            ok = conform(check, f"{path}.{key}", known[key], item) and ok
        elif isinstance(extra, dict):
            ok = conform(check, f"{path}.{key}", extra, item) and ok
        else:
            check.fail(f"{path}.{key}", f"unknown field (known: {', '.join(sorted(known))})")
            ok = False
    return ok


def _string_map(
    check: Problems, path: str, raw: Any, limit: int, label_values: bool, reserved: tuple[str, ...]
) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        check.fail(path, f"must be an object of strings, got {kind(raw)}")
        return None
    if len(raw) > limit:
        check.fail(path, f"must have at most {limit} entries, got {len(raw)}")
        return None
    ok = True
    for key, value in raw.items():
        problem = qualified_name_problem(str(key))
        if problem is None and (key in reserved or str(key).startswith(RESERVED_PREFIX)):
            problem = f"{quote(key)} is set by the operator (reserved: {', '.join(reserved)}, {RESERVED_PREFIX}*)"
        if problem is not None:
            check.fail(f"{path}.{key}", problem)
            ok = False
        elif not isinstance(value, str):
            check.fail(f"{path}.{key}", f"must be a string, got {kind(value)}")
            ok = False
        elif label_values and not is_label_value(value):
            check.fail(f"{path}.{key}", label_value_problem(value))
            ok = False
        elif not label_values and len(value) > MAX_ANNOTATION_VALUE:
            check.fail(f"{path}.{key}", f"must be at most {MAX_ANNOTATION_VALUE} characters, got {len(value)}")
            ok = False
    return {str(k): str(v) for k, v in raw.items()} if ok else None


def _pull_secrets(check: Problems, raw: Any) -> tuple[str, ...] | None:
    path = "spec.imagePullSecrets"
    schema = {
        "type": "array",
        "maxItems": MAX_PULL_SECRETS,
        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    }
    if not conform(check, path, schema, raw):
        return None
    names: list[str] = []
    for i, item in enumerate(raw):
        name = item["name"]
        if len(name) > 253 or not grammar.full(grammar.DNS_SUBDOMAIN, name):
            check.fail(f"{path}[{i}].name", f"{quote(name)} is not a valid Secret name")
        elif name in names:
            check.fail(f"{path}[{i}].name", f"duplicate Secret {quote(name)}")
        else:
            names.append(name)
    return tuple(names) if len(names) == len(raw) else None


def parse_pod(check: Problems, spec: dict[str, Any]) -> PodSettings | None:
    """The pod knobs of a spec (already known to be an object), or None after reporting problems."""
    shapes = upstream_shapes()
    secrets = _pull_secrets(check, spec.get("imagePullSecrets", []))
    affinity = spec.get("affinity", {})
    affinity_ok = conform(check, "spec.affinity", shapes["affinity"], affinity) and check_affinity(check, affinity)
    spread = spec.get("topologySpreadConstraints", [])
    spread_ok = conform(
        check,
        "spec.topologySpreadConstraints",
        {"type": "array", "maxItems": MAX_SPREAD_CONSTRAINTS, "items": shapes["topologySpreadConstraint"]},
        spread,
    ) and check_spread(check, spread)
    priority = spec.get("priorityClassName")
    priority_ok = priority is None or (
        isinstance(priority, str) and len(priority) <= 253 and grammar.full(grammar.DNS_SUBDOMAIN, priority)
    )
    if not priority_ok:
        check.fail("spec.priorityClassName", f"{quote(priority)} is not a valid PriorityClass name (a DNS subdomain)")
    labels = _string_map(check, "spec.podLabels", spec.get("podLabels", {}), MAX_POD_LABELS, True, RESERVED_LABELS)
    annotations = _string_map(
        check, "spec.podAnnotations", spec.get("podAnnotations", {}), MAX_POD_ANNOTATIONS, False, ()
    )
    if secrets is None or labels is None or annotations is None or not (affinity_ok and spread_ok and priority_ok):
        return None
    return PodSettings(
        image_pull_secrets=secrets,
        affinity=dict(affinity),
        topology_spread_constraints=tuple(dict(c) for c in spread),
        priority_class_name=priority,
        labels=labels,
        annotations=annotations,
    )
