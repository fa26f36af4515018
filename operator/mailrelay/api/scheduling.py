"""Resources, nodeSelector and tolerations of a MailRelay, checked as the API server would.

A value the Deployment controller or the API server refuses would otherwise give a relay that
validates but never starts; each is refused here with the field that is wrong.
"""

from __future__ import annotations

from typing import Any

from mailrelay.api import grammar
from mailrelay.api.checker import Checker, kind, quote
from mailrelay.api.labels import qualified_name_problem
from mailrelay.kube.quantity import parse_quantity

MAX_SELECTOR_ENTRIES = 20
MAX_TOLERATIONS = 50
MAX_RESOURCE_ENTRIES = 10


def _qualified_name(check: Checker, path: str, key: Any) -> bool:
    problem = qualified_name_problem(key) if isinstance(key, str) else f"{quote(key)} is not a string"
    if problem:
        check.fail(path, problem.replace(f"{quote(key)}:", f"{quote(key)} is not a qualified name:", 1))
    return problem is None


def parse_resources(check: Checker, raw: Any, where: str = "spec.resources") -> dict[str, Any] | None:
    resources = check.mapping(where, raw, {"limits", "requests"})
    if resources is None:
        return None
    clean: dict[str, dict[str, str]] = {}
    for part in ("limits", "requests"):
        values = resources.get(part)
        if values is None:
            continue
        if not isinstance(values, dict) or len(values) > MAX_RESOURCE_ENTRIES:
            check.fail(
                f"{where}.{part}",
                f"must be an object of at most {MAX_RESOURCE_ENTRIES} quantities, got {kind(values)}",
            )
            continue
        clean[part] = {}
        for key, quantity in values.items():
            path = f"{where}.{part}.{key}"
            if not _qualified_name(check, path, key):
                continue
            text = str(quantity)
            if (
                isinstance(quantity, bool)
                or not isinstance(quantity, str | int)
                or len(text) > 64
                or not grammar.full(grammar.QUANTITY, text)
            ):
                check.fail(path, f"{quote(quantity)} is not a non-negative Kubernetes quantity (e.g. 100m, 64Mi, 1.5)")
                continue
            clean[part][key] = text
    for key, request in clean.get("requests", {}).items():
        limit = clean.get("limits", {}).get(key)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            check.fail(
                f"{where}.requests.{key}",
                f"{request} is more than the limit {limit}; Kubernetes refuses such a pod",
            )
    return clean


def parse_node_selector(check: Checker, raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict) or len(raw) > MAX_SELECTOR_ENTRIES:
        check.fail("spec.nodeSelector", f"must be an object of at most {MAX_SELECTOR_ENTRIES} strings, got {kind(raw)}")
        return None
    ok = True
    for key, value in raw.items():
        ok = _qualified_name(check, f"spec.nodeSelector.{key}", key) and ok
        if not isinstance(value, str):
            check.fail(f"spec.nodeSelector.{key}", f"must be a string, got {kind(value)}")
            ok = False
        elif len(value) > 63 or not grammar.full(grammar.LABEL_VALUE, value):
            check.fail(
                f"spec.nodeSelector.{key}",
                f"{quote(value)} is not a label value (at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit)",
            )
            ok = False
    return {str(k): str(v) for k, v in raw.items()} if ok else None


_TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}
TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")  # "" matches every effect


def parse_tolerations(check: Checker, raw: Any) -> tuple[dict[str, Any], ...] | None:
    items = check.string_list("spec.tolerations", raw, MAX_TOLERATIONS)
    if items is None:
        return None
    result = []
    for i, item in enumerate(items):
        toleration = check.mapping(f"spec.tolerations[{i}]", item, _TOLERATION_FIELDS)
        if toleration is not None:
            _check_toleration(check, f"spec.tolerations[{i}]", toleration)
            result.append(dict(toleration))
    return tuple(result)


def _check_toleration(check: Checker, path: str, toleration: dict[str, Any]) -> None:
    """The rules core/v1 validation applies to one toleration (the pod would be refused otherwise)."""
    operator = toleration.get("operator", "Equal")
    key, value = toleration.get("key", ""), toleration.get("value", "")
    if operator not in TOLERATION_OPERATORS:
        check.fail(f"{path}.operator", "must be Equal or Exists")
    if toleration.get("effect", "NoSchedule") not in TOLERATION_EFFECTS:
        check.fail(f"{path}.effect", "must be NoSchedule, PreferNoSchedule or NoExecute")
    if key != "":
        _qualified_name(check, f"{path}.key", key)
    elif operator != "Exists":
        check.fail(f"{path}.operator", "must be Exists when the key is empty")
    if not isinstance(value, str) or len(value) > 63 or not grammar.full(grammar.LABEL_VALUE, value):
        check.fail(f"{path}.value", f"{quote(value)} is not a label value")
    elif operator == "Exists" and value:
        check.fail(f"{path}.value", "must be empty when the operator is Exists")
    seconds = toleration.get("tolerationSeconds")
    if seconds is not None:
        check.integer(f"{path}.tolerationSeconds", seconds, -(2**63), 2**63 - 1)
        if toleration.get("effect") != "NoExecute":
            check.fail(f"{path}.tolerationSeconds", "is only allowed with the effect NoExecute")
