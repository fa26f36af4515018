"""The relay's NetworkPolicy as rendered: valid for the API server, owned, and the parts no enforcement test here
can reach.

What the policy admits and refuses is tested where a real implementation enforces it: kube-router's firewall on
the node (tests/node/test_node_network_policy.py: the spec.clients selectors, sameNamespace, the metrics port, the
replicas' hand-off, restricted egress to a smarthost network). Left here, as plain assertions on the rendered
object: what needs addresses outside the node (public and IPv6 smarthost networks, direct delivery on port 25).
"""

from __future__ import annotations

from typing import Any

import pytest

from mailrelay.render import postfix
from mailrelay.render.relay import network_policy, render_relay, selector_labels

from support.kube_schemas import K8S_VERSIONS, validate
from support.samples import GUARDED, by_kind, make_relay


def render(relay: Any) -> list[dict[str, Any]]:
    return render_relay(relay).objects


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_policy_validates_against_kubernetes_schemas(version: str) -> None:
    for spec in (
        GUARDED,
        {"mailFromFQDN": "a.example"},
        {**GUARDED, "egress": {"restricted": True}},
        {"mailFromFQDN": "a.example", "egress": {"restricted": True}},
        {**GUARDED, "networkPolicy": {"sameNamespace": False}},
    ):
        validate(network_policy(make_relay(spec)), version)


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
    assert smarthost == {
        "ports": [{"protocol": "TCP", "port": 587}],
        "to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}, {"ipBlock": {"cidr": "2001:db8::/64"}}],
    }
    # The drain's hand-off: the relay's own pods only (they are the Service's endpoints), on the pods' SMTP port.
    assert handoff == {
        "to": [{"podSelector": {"matchLabels": selector_labels(make_relay(GUARDED))}}],
        "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}],
    }


def test_restricted_egress_without_networks_or_smarthost_opens_the_smtp_port_to_any_address() -> None:
    _, direct, _ = _egress({"mailFromFQDN": "a.example", "egress": {"restricted": True}})
    assert direct == {"ports": [{"protocol": "TCP", "port": 25}]}  # each recipient's MX, wherever it is
    _, smarthost, _ = _egress({**GUARDED, "egress": {"restricted": True}})
    assert smarthost == {"ports": [{"protocol": "TCP", "port": 587}]}


def test_switched_off_there_is_no_policy() -> None:
    assert [
        o
        for o in render(make_relay({"mailFromFQDN": "a.example", "networkPolicy": {"enabled": False}}))
        if o["kind"] == "NetworkPolicy"
    ] == []
