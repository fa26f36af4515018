"""The relay's NetworkPolicy as rendered: valid for the API server, owned, and the parts no enforcement test here
can reach.

What the policy admits and refuses is tested where a real implementation enforces it: kube-router's firewall on
the node (tests/node/test_node_network_policy.py: the spec.clients selectors, sameNamespace, the metrics port, the
replicas' hand-off, restricted egress to a smarthost network). Left here, as plain assertions on the rendered
object: what needs addresses outside the node (public and IPv6 smarthost networks, direct delivery on port 25).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate.utils as kv
import pytest

from mailrelay import postfix
from mailrelay.render import network_policy, render, selector_labels

from conftest import make_relay
from test_render import K8S_VERSIONS, by_kind

CLIENTS = [
    {"namespaceSelector": {"matchLabels": {"team": "web"}}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "billing"}},
     "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["invoices"]}]}},
    {"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]}]},
     "podSelector": {"matchLabels": {"mail": "yes"}}},
]
GUARDED: dict[str, Any] = {
    "mailFromFQDN": "apps.example.com", "clients": CLIENTS,
    "relay": {"host": "smtp.example.net", "port": 587},
    "egress": {"restricted": True, "smarthostNetworks": ["203.0.113.10/32", "2001:db8::/64"]},
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_policy_validates_against_kubernetes_schemas(version: str) -> None:
    for spec in (GUARDED, {"mailFromFQDN": "a.example"}, {**GUARDED, "egress": {"restricted": True}},
                 {"mailFromFQDN": "a.example", "egress": {"restricted": True}},
                 {**GUARDED, "networkPolicy": {"sameNamespace": False}}):
        kv.validate(network_policy(make_relay(spec)), version, strict=True)


def test_the_policy_is_owned_and_guards_only_this_relays_pods() -> None:
    relay = make_relay(GUARDED)
    policy = network_policy(relay)
    assert policy["metadata"]["name"] == "mailrelay-relay" and policy["metadata"]["namespace"] == "apps"
    [owner] = policy["metadata"]["ownerReferences"]
    assert owner["uid"] == relay.uid and owner["controller"] is True
    deployment = by_kind(render(relay))["Deployment"]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def _egress(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(network_policy(make_relay(spec))["spec"]["egress"])


def test_restricted_egress_names_the_smarthost_networks_both_families_on_its_port() -> None:
    dns, smarthost, handoff = _egress(GUARDED)
    assert dns == {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    assert smarthost == {"ports": [{"protocol": "TCP", "port": 587}],
                         "to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}, {"ipBlock": {"cidr": "2001:db8::/64"}}]}
    # The drain's hand-off: the relay's own pods only (they are the Service's endpoints), on the pods' SMTP port.
    assert handoff == {"to": [{"podSelector": {"matchLabels": selector_labels(make_relay(GUARDED))}}],
                       "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}]}


def test_restricted_egress_without_networks_or_smarthost_opens_the_smtp_port_to_any_address() -> None:
    _, direct, _ = _egress({"mailFromFQDN": "a.example", "egress": {"restricted": True}})
    assert direct == {"ports": [{"protocol": "TCP", "port": 25}]}  # each recipient's MX, wherever it is
    _, smarthost, _ = _egress({**GUARDED, "egress": {"restricted": True}})
    assert smarthost == {"ports": [{"protocol": "TCP", "port": 587}]}


def test_switched_off_there_is_no_policy() -> None:
    assert [o for o in render(make_relay({"mailFromFQDN": "a.example", "networkPolicy": {"enabled": False}}))
            if o["kind"] == "NetworkPolicy"] == []
