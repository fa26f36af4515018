"""What a NetworkPolicy admits, by the rules of the Kubernetes API (networking.k8s.io/v1).

Semantics implemented, as documented for NetworkPolicySpec and NetworkPolicyPeer:
- A policy applies to the pods of its own namespace that its podSelector selects, and only for the
  directions in policyTypes. Traffic to a pod no policy selects for that direction is allowed.
- A selected pod admits a connection when any rule admits it (OR across rules). A rule admits it
  when one of its ports matches (no ports: every port) AND one of its peers matches (no peers:
  every source). Peers are ORed.
- Within a peer the selectors are ANDed: podSelector alone = pods of the policy's namespace;
  namespaceSelector alone = every pod of the selected namespaces; both = the selected pods in the
  selected namespaces. ipBlock matches by address, `except` carving holes.
- A LabelSelector ANDs matchLabels and every matchExpression; {} selects everything.
- A port is a number or a container port name of the destination pod; protocol defaults to TCP;
  endPort makes a range.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number

    def __post_init__(self) -> None:
        # The API server sets this label on every namespace (since 1.21).
        labels = {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}
        object.__setattr__(self, "namespace_labels", labels)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(hole) for hole in block.get("except") or []
        )
    namespace_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespace_selector is None and pod_selector is None:
        raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
    if namespace_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, other.namespace_labels)
    return in_namespace and selects(pod_selector, other.labels)


def _port_matches(rule_port: dict[str, Any], port: int, protocol: str, destination: Pod) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return destination.ports.get(wanted) == port
    return bool(wanted <= port <= rule_port.get("endPort", wanted))


def _rule_admits(
    rule: dict[str, Any], peers_key: str, policy_namespace: str, other: Pod, port: int, protocol: str, destination: Pod
) -> bool:
    ports = rule.get("ports")
    if ports and not any(_port_matches(p, port, protocol, destination) for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(_peer_matches(p, policy_namespace, other) for p in peers)


def _directions(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])


def allows_ingress(
    policies: list[dict[str, Any]], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may open a connection to `destination` on `port`, given all these policies."""
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == destination.namespace
        and "Ingress" in _directions(p)
        and selects(p["spec"]["podSelector"], destination.labels)
    ]
    if not applying:
        return True
    return any(
        _rule_admits(rule, "from", p["metadata"]["namespace"], source, port, protocol, destination)
        for p in applying
        for rule in p["spec"].get("ingress") or []
    )


def allows_egress(
    policies: list[dict[str, Any]], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may connect out to `destination` on `port`, given all these policies."""
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == source.namespace
        and "Egress" in _directions(p)
        and selects(p["spec"]["podSelector"], source.labels)
    ]
    if not applying:
        return True
    return any(
        _rule_admits(rule, "to", p["metadata"]["namespace"], destination, port, protocol, destination)
        for p in applying
        for rule in p["spec"].get("egress") or []
    )
