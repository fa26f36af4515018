"""Builders for a structural OpenAPI v3 schema, so the CRDs read as declarations, not YAML nesting.

Each returns the plain dict the CRD holds, keys in the order a reader expects (type, description,
constraints, nested schemas, CEL rules). Python names stand for the CRD's x-kubernetes-* keys.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
POD_SCHEMA = ROOT / "operator" / "mailrelay" / "api" / "pod_schema.json"  # `make schemas` writes it
_KEYS = {
    "list_type": "x-kubernetes-list-type",
    "list_map_keys": "x-kubernetes-list-map-keys",
    "map_type": "x-kubernetes-map-type",
    "int_or_string": "x-kubernetes-int-or-string",
    "any_of": "anyOf",
    "values": "additionalProperties",
    "rules": "x-kubernetes-validations",
}


def schema(type: str | None = None, description: str | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if type is not None:
        out["type"] = type
    if description is not None:
        out["description"] = description
    for key, value in fields.items():
        out[_KEYS.get(key, key)] = value
    return out


def obj(description: str | None = None, **fields: Any) -> dict[str, Any]:
    return schema("object", description, **fields)


def string(description: str | None = None, **fields: Any) -> dict[str, Any]:
    return schema("string", description, **fields)


def integer(description: str | None = None, **fields: Any) -> dict[str, Any]:
    return schema("integer", description, **fields)


def boolean(description: str | None = None, **fields: Any) -> dict[str, Any]:
    return schema("boolean", description, **fields)


def array(items: dict[str, Any], description: str | None = None, **fields: Any) -> dict[str, Any]:
    out = schema("array", description, **fields)
    out["items"] = items
    return out


def rule(expression: str, message: str, **fields: Any) -> dict[str, Any]:
    """A CEL rule (x-kubernetes-validations entry): `self` is the value it is declared on."""
    return {"rule": expression, "message": message, **fields}


@cache
def _shapes() -> dict[str, Any]:
    return dict(json.loads(POD_SCHEMA.read_text()))


def upstream(shape: str, description: str | None = None) -> dict[str, Any]:
    """A Kubernetes shape (core/v1 Affinity, ...) as hack/upstream_schemas.py converted it."""
    found = copy.deepcopy(_shapes()[shape])
    return {"description": description, **found} if description else found


def whole(expression: str) -> str:
    """An api/grammar.py expression as a whole-string `pattern` (RE2 anchors, as the API server matches)."""
    return f"^{expression}$"


def cel_regex(expression: str) -> str:
    """An api/grammar.py expression as a whole-string CEL string literal, for `x.matches(...)` in a rule."""
    return "'" + whole(expression).replace("\\", "\\\\") + "'"
