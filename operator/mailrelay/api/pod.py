"""The pod-level knobs of a MailRelay: pull secrets, scheduling, priority, extra labels and annotations.

Kept apart from spec.py because these are Kubernetes' own shapes rather than relay settings:
affinity and topology spread constraints are checked against the upstream schemas in
pod_schema.json (the same file the CRD embeds), labels and annotations with Kubernetes' key and
value syntax. Keys the operator relies on (the Service/Deployment selector, our annotations) are
refused, since a user value there would orphan the pods or hide a configuration change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

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

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


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


_KIND_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}
_PYTHON_TYPES: dict[str, type] = {"object": dict, "array": list, "string": str, "boolean": bool}


def _kind(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def conform(check: Problems, path: str, schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` fits a structural schema; each misfit is reported with its path."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            check.fail(path, f"must be an integer or a string, got {_kind(value)}")
            return False
        return True
    expected = _PYTHON_TYPES.get(str(kind))
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            check.fail(path, f"must be an integer, got {_kind(value)}")
            return False
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            check.fail(path, f"must be from {low} to {high if high is not None else 'any'}, got {value}")
            return False
        return True
    if expected is not None and not isinstance(value, expected):
        check.fail(path, f"must be {_KIND_NAMES[expected]}, got {_kind(value)}")
        return False
    if "enum" in schema and value not in schema["enum"]:
        check.fail(path, f"must be one of {', '.join(map(repr, schema['enum']))}, got {value!r}")
        return False
    ok = True
    if isinstance(value, dict):
        known = schema.get("properties", {})
        extra = schema.get("additionalProperties")
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
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            check.fail(path, f"must have at most {schema['maxItems']} entries, got {len(value)}")
            return False
        for i, item in enumerate(value):
            ok = conform(check, f"{path}[{i}]", schema.get("items", {}), item) and ok
    return ok


def qualified_name_problem(key: str) -> str | None:
    """Kubernetes' rule for label and annotation keys: [DNS-subdomain prefix '/'] name (≤ 63)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return f"{key!r}: the prefix before '/' must be a DNS subdomain of at most 253 characters"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"{key!r}: the name must be 1 to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _string_map(
    check: Problems, path: str, raw: Any, limit: int, label_values: bool, reserved: tuple[str, ...]
) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        check.fail(path, f"must be an object of strings, got {_kind(raw)}")
        return None
    if len(raw) > limit:
        check.fail(path, f"must have at most {limit} entries, got {len(raw)}")
        return None
    ok = True
    for key, value in raw.items():
        problem = qualified_name_problem(str(key))
        if problem is None and (key in reserved or str(key).startswith(RESERVED_PREFIX)):
            problem = f"{key!r} is set by the operator (reserved: {', '.join(reserved)}, {RESERVED_PREFIX}*)"
        if problem is not None:
            check.fail(f"{path}.{key}", problem)
            ok = False
        elif not isinstance(value, str):
            check.fail(f"{path}.{key}", f"must be a string, got {_kind(value)}")
            ok = False
        elif label_values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            check.fail(
                f"{path}.{key}",
                f"{value!r} is not a label value (at most 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit)",
            )
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
        if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            check.fail(f"{path}[{i}].name", f"{name!r} is not a valid Secret name")
        elif name in names:
            check.fail(f"{path}[{i}].name", f"duplicate Secret {name!r}")
        else:
            names.append(name)
    return tuple(names) if len(names) == len(raw) else None


def parse_pod(check: Problems, spec: dict[str, Any]) -> PodSettings | None:
    """The pod knobs of a spec (already known to be an object), or None after reporting problems."""
    shapes = upstream_shapes()
    secrets = _pull_secrets(check, spec.get("imagePullSecrets", []))
    affinity = spec.get("affinity", {})
    affinity_ok = conform(check, "spec.affinity", shapes["affinity"], affinity)
    spread = spec.get("topologySpreadConstraints", [])
    spread_ok = conform(
        check,
        "spec.topologySpreadConstraints",
        {"type": "array", "maxItems": MAX_SPREAD_CONSTRAINTS, "items": shapes["topologySpreadConstraint"]},
        spread,
    )
    priority = spec.get("priorityClassName")
    priority_ok = priority is None or (
        isinstance(priority, str) and len(priority) <= 253 and bool(DNS1123_SUBDOMAIN.match(priority))
    )
    if not priority_ok:
        check.fail("spec.priorityClassName", f"{priority!r} is not a valid PriorityClass name (a DNS subdomain)")
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
