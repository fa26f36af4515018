"""Kubernetes' label grammar, once: qualified names, label values and label selectors.

Every field that carries them uses these checks (spec.clients, podLabels and podAnnotations keys,
nodeSelector, toleration keys, resource names, and the selectors and topology keys inside affinity
and topologySpreadConstraints, which the upstream schema only type-checks). All matching is
whole-string (`grammar.full`): a `re.match` with `$` would let `"value\\n"` through.
"""

from __future__ import annotations

from typing import Any, Protocol

from mailrelay.api import grammar
from mailrelay.api.checker import quote

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NODE_OPERATORS = (*SELECTOR_OPERATORS, "Gt", "Lt")


class Problems(Protocol):
    def fail(self, path: str, message: str) -> None: ...


def qualified_name_problem(key: str) -> str | None:
    """Kubernetes' rule for label and annotation keys: [DNS-subdomain prefix '/'] name (≤ 63)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not grammar.full(grammar.DNS_SUBDOMAIN, prefix)):
        return f"{quote(key)}: the prefix before '/' must be a DNS subdomain of at most 253 characters"
    if not name or len(name) > 63 or not grammar.full(grammar.LABEL_VALUE, name):
        return (
            f"{quote(key)}: the name must be 1 to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def is_label_value(value: Any) -> bool:
    """At most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit."""
    return isinstance(value, str) and len(value) <= 63 and grammar.full(grammar.LABEL_VALUE, value)


def label_value_problem(value: Any) -> str:
    return (
        f"{quote(value)} is not a label value (at most 63 letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit)"
    )


def check_key(check: Problems, path: str, key: Any) -> bool:
    problem = qualified_name_problem(key) if isinstance(key, str) else f"{quote(key)}: not a string"
    if problem is not None:
        check.fail(path, problem.replace(f"{quote(key)}:", f"{quote(key)} is not a label key:", 1))
    return problem is None


def check_requirement(check: Problems, path: str, item: dict[str, Any], operators: tuple[str, ...]) -> bool:
    """One `{key, operator, values}` of a label or node selector."""
    ok = check_key(check, f"{path}.key", item.get("key"))
    operator, values = item.get("operator"), item.get("values") or []
    if operator not in operators:
        check.fail(f"{path}.operator", f"must be one of {', '.join(operators)}, got {quote(operator)}")
        return False
    if operator in ("In", "NotIn") and not values:
        check.fail(f"{path}.values", f"must not be empty for operator {operator}")
        return False
    if operator in ("Exists", "DoesNotExist") and values:
        check.fail(f"{path}.values", f"must be empty for operator {operator}")
        return False
    if operator in ("Gt", "Lt"):
        if len(values) != 1 or not grammar.full("-?[0-9]{1,18}", str(values[0])):
            check.fail(f"{path}.values", f"must be one integer for operator {operator}, got {quote(values)}")
            return False
        return ok
    for i, value in enumerate(values):
        if not is_label_value(value):
            check.fail(f"{path}.values[{i}]", label_value_problem(value))
            ok = False
    return ok


def check_selector(check: Problems, path: str, selector: dict[str, Any] | None) -> bool:
    """A metav1.LabelSelector whose shape the upstream schema has already checked."""
    if selector is None:
        return True
    ok = True
    for key, value in (selector.get("matchLabels") or {}).items():
        ok = check_key(check, f"{path}.matchLabels", key) and ok
        if not is_label_value(value):
            check.fail(f"{path}.matchLabels.{key}", label_value_problem(value))
            ok = False
    for i, item in enumerate(selector.get("matchExpressions") or []):
        ok = check_requirement(check, f"{path}.matchExpressions[{i}]", item, SELECTOR_OPERATORS) and ok
    return ok


def _keys(check: Problems, path: str, keys: list[Any] | None) -> bool:
    return all([check_key(check, f"{path}[{i}]", key) for i, key in enumerate(keys or [])])


def _pod_term(check: Problems, path: str, term: dict[str, Any]) -> bool:
    checks = [
        check_key(check, f"{path}.topologyKey", term.get("topologyKey")),
        check_selector(check, f"{path}.labelSelector", term.get("labelSelector")),
        check_selector(check, f"{path}.namespaceSelector", term.get("namespaceSelector")),
        _keys(check, f"{path}.matchLabelKeys", term.get("matchLabelKeys")),
        _keys(check, f"{path}.mismatchLabelKeys", term.get("mismatchLabelKeys")),
    ]
    for i, namespace in enumerate(term.get("namespaces") or []):
        if not (len(namespace) <= 63 and grammar.full(grammar.DNS_LABEL, namespace)):
            check.fail(f"{path}.namespaces[{i}]", f"{quote(namespace)} is not a namespace name")
            checks.append(False)
    return all(checks)


def _node_term(check: Problems, path: str, term: dict[str, Any]) -> bool:
    checks = [
        check_requirement(check, f"{path}.matchExpressions[{i}]", item, NODE_OPERATORS)
        for i, item in enumerate(term.get("matchExpressions") or [])
    ]
    for i, item in enumerate(term.get("matchFields") or []):
        if item.get("key") != "metadata.name":
            check.fail(f"{path}.matchFields[{i}].key", f"must be metadata.name, got {quote(item.get('key'))}")
            checks.append(False)
    return all(checks)


def check_affinity(check: Problems, affinity: dict[str, Any]) -> bool:
    """Selectors, keys and values inside spec.affinity (its shape already conforms)."""
    ok = True
    node = affinity.get("nodeAffinity") or {}
    required = (node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    base = "spec.affinity.nodeAffinity"
    for i, term in enumerate(required):
        path = f"{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
        ok = _node_term(check, path, term) and ok
    for i, item in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        path = f"{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"
        ok = _node_term(check, path, item.get("preference") or {}) and ok
    for kind in ("podAffinity", "podAntiAffinity"):
        pods = affinity.get(kind) or {}
        for i, term in enumerate(pods.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            ok = (
                _pod_term(check, f"spec.affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term)
                and ok
            )
        for i, item in enumerate(pods.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            path = f"spec.affinity.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"
            ok = _pod_term(check, path, item.get("podAffinityTerm") or {}) and ok
    return ok


def check_spread(check: Problems, constraints: list[dict[str, Any]]) -> bool:
    """Topology keys, selectors and label keys of spec.topologySpreadConstraints."""
    ok = True
    for i, constraint in enumerate(constraints):
        path = f"spec.topologySpreadConstraints[{i}]"
        ok = check_key(check, f"{path}.topologyKey", constraint.get("topologyKey")) and ok
        ok = check_selector(check, f"{path}.labelSelector", constraint.get("labelSelector")) and ok
        ok = _keys(check, f"{path}.matchLabelKeys", constraint.get("matchLabelKeys")) and ok
    return ok
