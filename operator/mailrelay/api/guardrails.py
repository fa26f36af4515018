"""Tenant guardrails of a MailRelay: who may connect, where the relay may connect, how fast, and to whom.

`spec.networkPolicy`, `spec.clients` and `spec.egress` become a NetworkPolicy (the cluster tells
namespaces apart; Postfix only sees addresses), `spec.limits` becomes Postfix's per-client anvil
limits and `spec.recipients.allowDomains` a recipient access map. Parsed here, apart from the rest of
the spec, with the same collecting checker, so every problem names its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailrelay.api.checker import Checker, quote
from mailrelay.api.labels import SELECTOR_OPERATORS as OPERATORS
from mailrelay.api.labels import check_key, check_requirement, is_label_value, label_value_problem

FIELDS = {"networkPolicy", "clients", "egress", "limits", "recipients"}

MAX_CLIENTS = 20
MAX_SELECTOR_TERMS = 20
MAX_SELECTOR_VALUES = 50
MAX_EGRESS_NETWORKS = 20
MAX_ALLOW_DOMAINS = 100
# Postfix's smtpd runs at most default_process_limit (100) sessions, so more connections mean nothing.
MAX_CONNECTIONS = 100
MAX_MESSAGES_PER_MINUTE = 1_000_000
MAX_RECIPIENTS_PER_MINUTE = 10_000_000


@dataclass(frozen=True)
class Limits:
    """Per client address, counted by Postfix's anvil over one minute; 0 turns a limit off.

    The defaults sit far above what an application pod sends, so only a runaway or abusive client
    meets them, and it gets a temporary refusal (4xx) that its MTA retries.
    """

    messages_per_minute: int = 600
    recipients_per_minute: int = 3000
    concurrent_connections: int = 50


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes LabelSelector, kept as tuples so the spec stays hashable."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def to_k8s(self) -> dict[str, Any]:
        selector: dict[str, Any] = {}
        if self.match_labels:
            selector["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            selector["matchExpressions"] = [
                {"key": key, "operator": op, **({"values": list(values)} if values else {})}
                for key, op, values in self.match_expressions
            ]
        return selector


@dataclass(frozen=True)
class ClientPeer:
    """One NetworkPolicy peer: both selectors must match (a pod in a namespace), as in Kubernetes."""

    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None

    def to_k8s(self) -> dict[str, Any]:
        peer: dict[str, Any] = {}
        if self.namespace_selector is not None:
            peer["namespaceSelector"] = self.namespace_selector.to_k8s()
        if self.pod_selector is not None:
            peer["podSelector"] = self.pod_selector.to_k8s()
        return peer


@dataclass(frozen=True)
class Egress:
    restricted: bool = False
    smarthost_networks: tuple[str, ...] = ()  # empty: any address, on the smarthost's port only


@dataclass(frozen=True)
class Guardrails:
    network_policy: bool = True
    same_namespace: bool = True  # every pod of the relay's namespace may send
    clients: tuple[ClientPeer, ...] = ()
    egress: Egress = Egress()
    limits: Limits = Limits()
    allow_domains: tuple[str, ...] = ()  # empty: any recipient


def parse(check: Checker, spec: dict[str, Any]) -> Guardrails | None:
    """The guardrail fields of a spec mapping, or None after recording each problem."""
    before = len(check.problems)
    enabled, same_namespace = _parse_network_policy(check, spec.get("networkPolicy", {}))
    clients = _parse_clients(check, spec.get("clients", []), same_namespace is not False)
    egress = _parse_egress(check, spec.get("egress", {}))
    limits = _parse_limits(check, spec.get("limits", {}))
    domains = _parse_recipients(check, spec.get("recipients", {}))
    if egress is not None and egress.restricted and enabled is False:
        check.fail(
            "spec.egress.restricted",
            "needs spec.networkPolicy.enabled: the egress rules live in the relay's NetworkPolicy",
        )
    if same_namespace is False and clients == ():
        check.fail(
            "spec.clients",
            "must admit some pods when spec.networkPolicy.sameNamespace is false; an empty list would let no pod send",
        )
    if len(check.problems) > before:
        return None
    assert enabled is not None and same_namespace is not None and clients is not None and egress is not None
    assert limits is not None and domains is not None
    return Guardrails(
        network_policy=enabled,
        same_namespace=same_namespace,
        clients=clients,
        egress=egress,
        limits=limits,
        allow_domains=domains,
    )


def _boolean(check: Checker, path: str, value: Any) -> bool | None:
    if not isinstance(value, bool):
        check.fail(path, f"must be true or false, got {quote(value)}")
        return None
    return value


def _parse_network_policy(check: Checker, raw: Any) -> tuple[bool | None, bool | None]:
    policy = check.mapping("spec.networkPolicy", raw, {"enabled", "sameNamespace"})
    if policy is None:
        return None, None
    enabled = _boolean(check, "spec.networkPolicy.enabled", policy.get("enabled", True))
    same = _boolean(check, "spec.networkPolicy.sameNamespace", policy.get("sameNamespace", True))
    if enabled is False and same is False:
        check.fail(
            "spec.networkPolicy.sameNamespace",
            "false needs enabled: true; without the policy every pod within allowedNetworks may send",
        )
        return None, None
    return enabled, same


def _parse_clients(check: Checker, raw: Any, same_namespace: bool) -> tuple[ClientPeer, ...] | None:
    items = check.string_list("spec.clients", raw, MAX_CLIENTS)
    if items is None:
        return None
    peers: list[ClientPeer] = []
    for i, item in enumerate(items):
        path = f"spec.clients[{i}]"
        peer = check.mapping(path, item, {"namespaceSelector", "podSelector"})
        if peer is None:
            continue
        if peer.get("namespaceSelector") is None and peer.get("podSelector") is None:
            check.fail(path, "needs a namespaceSelector, a podSelector or both")
            continue
        if peer.get("namespaceSelector") is None and same_namespace:
            check.fail(
                path,
                "a podSelector alone selects pods of the relay's own namespace, which are all admitted "
                "already: add a namespaceSelector, or set spec.networkPolicy.sameNamespace: false",
            )
            continue
        namespaces = pods = None
        if peer.get("namespaceSelector") is not None:
            namespaces = _parse_selector(check, f"{path}.namespaceSelector", peer["namespaceSelector"])
        if peer.get("podSelector") is not None:
            pods = _parse_selector(check, f"{path}.podSelector", peer["podSelector"])
        peers.append(ClientPeer(namespace_selector=namespaces, pod_selector=pods))
    return tuple(peers)


def _parse_selector(check: Checker, path: str, raw: Any) -> LabelSelector | None:
    selector = check.mapping(path, raw, {"matchLabels", "matchExpressions"})
    if selector is None:
        return None
    labels: list[tuple[str, str]] = []
    raw_labels = selector.get("matchLabels", {})
    if not isinstance(raw_labels, dict):
        check.fail(f"{path}.matchLabels", f"must be an object of label values, got {type(raw_labels).__name__}")
    elif len(raw_labels) > MAX_SELECTOR_TERMS:
        check.fail(f"{path}.matchLabels", f"must have at most {MAX_SELECTOR_TERMS} labels, got {len(raw_labels)}")
    else:
        for key, value in raw_labels.items():
            if _label_key(check, f"{path}.matchLabels", key) and _label_value(
                check, f"{path}.matchLabels.{key}", value
            ):
                labels.append((key, value))
    expressions: list[tuple[str, str, tuple[str, ...]]] = []
    raw_expressions = (
        check.string_list(f"{path}.matchExpressions", selector.get("matchExpressions", []), MAX_SELECTOR_TERMS) or []
    )
    for i, item in enumerate(raw_expressions):
        expression = _parse_expression(check, f"{path}.matchExpressions[{i}]", item)
        if expression is not None:
            expressions.append(expression)
    return LabelSelector(match_labels=tuple(sorted(labels)), match_expressions=tuple(expressions))


def _parse_expression(check: Checker, path: str, raw: Any) -> tuple[str, str, tuple[str, ...]] | None:
    expression = check.mapping(path, raw, {"key", "operator", "values"})
    if expression is None:
        return None
    values = check.string_list(f"{path}.values", expression.get("values", []), MAX_SELECTOR_VALUES)
    if values is None or not check_requirement(check, path, {**expression, "values": values}, OPERATORS):
        return None
    return str(expression["key"]), str(expression["operator"]), tuple(values)


def _label_key(check: Checker, path: str, key: Any) -> bool:
    return check_key(check, path, key)


def _label_value(check: Checker, path: str, value: Any) -> bool:
    if not is_label_value(value):
        check.fail(path, label_value_problem(value))
        return False
    return True


def _parse_egress(check: Checker, raw: Any) -> Egress | None:
    egress = check.mapping("spec.egress", raw, {"restricted", "smarthostNetworks"})
    if egress is None:
        return None
    restricted = _boolean(check, "spec.egress.restricted", egress.get("restricted", False))
    items = check.string_list("spec.egress.smarthostNetworks", egress.get("smarthostNetworks", []), MAX_EGRESS_NETWORKS)
    if items is None or restricted is None:
        return None
    if items and not restricted:
        check.fail("spec.egress.smarthostNetworks", "only takes effect with spec.egress.restricted: true")
        return None
    networks = check.networks("spec.egress.smarthostNetworks", items)
    if networks is None:
        return None
    return Egress(restricted=restricted, smarthost_networks=networks)


_LIMITS = (
    ("messagesPerMinute", "messages_per_minute", MAX_MESSAGES_PER_MINUTE),
    ("recipientsPerMinute", "recipients_per_minute", MAX_RECIPIENTS_PER_MINUTE),
    ("concurrentConnections", "concurrent_connections", MAX_CONNECTIONS),
)


def _parse_limits(check: Checker, raw: Any) -> Limits | None:
    limits = check.mapping("spec.limits", raw, {name for name, _, _ in _LIMITS})
    if limits is None:
        return None
    values: dict[str, int] = {}
    for name, attribute, high in _LIMITS:
        value = check.integer(f"spec.limits.{name}", limits.get(name, getattr(Limits, attribute)), 0, high)
        if value is not None:
            values[attribute] = value
    return Limits(**values) if len(values) == len(_LIMITS) else None


def _parse_recipients(check: Checker, raw: Any) -> tuple[str, ...] | None:
    recipients = check.mapping("spec.recipients", raw, {"allowDomains"})
    if recipients is None:
        return None
    if "allowDomains" not in recipients:
        return ()
    items = check.string_list("spec.recipients.allowDomains", recipients["allowDomains"], MAX_ALLOW_DOMAINS)
    if items is None:
        return None
    if not items:
        check.fail("spec.recipients.allowDomains", "must list at least one domain; leave it out to allow any recipient")
        return None
    domains: list[str] = []
    for i, item in enumerate(items):
        host = check.hostname(f"spec.recipients.allowDomains[{i}]", item, need_dot=False)
        if host is None:
            continue
        if host in domains:
            check.fail(f"spec.recipients.allowDomains[{i}]", f"duplicate entry {quote(host)}")
            continue
        domains.append(host)
    return tuple(domains) if len(domains) == len(items) else None
