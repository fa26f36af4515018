"""The relay's NetworkPolicy: valid for the API server, and admitting exactly the peers it should.

Pod labels and ports come from the rendered Deployment and Service, so the policy is checked
against the pods the operator really creates.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mailrelay.api.spec import parse
from mailrelay.render.relay import network_policy, render_relay

from support.kube_schemas import K8S_VERSIONS, validate
from support.netpol import Pod, allows_egress, allows_ingress
from support.paths import ROOT
from support.samples import GUARDED, by_kind, make_relay


def _children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return by_kind(render_relay(make_relay(spec)).objects)


def relay_pod(spec: dict[str, Any]) -> tuple[Pod, int]:
    """The relay pod as the Deployment creates it, and the port its Service sends to."""
    children = _children(spec)
    template = children["Deployment"]["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    [service_port] = children["Service"]["spec"]["ports"]
    target = service_port["targetPort"]
    return Pod("apps", template["metadata"]["labels"], ports=ports), ports.get(target, target)


def policies(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in render_relay(make_relay(spec)).objects if o["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_policy_validates_against_kubernetes_schemas(version: str) -> None:
    for spec in (
        GUARDED,
        {"mailFromFQDN": "a.example"},
        {**GUARDED, "egress": {"restricted": True}},
        {"mailFromFQDN": "a.example", "egress": {"restricted": True}},
    ):
        validate(network_policy(make_relay(spec)), version)


def test_the_policy_is_owned_and_guards_only_this_relays_pods() -> None:
    relay = make_relay(GUARDED)
    policy = network_policy(relay)
    assert policy["metadata"]["name"] == "mailrelay-relay" and policy["metadata"]["namespace"] == "apps"
    [owner] = policy["metadata"]["ownerReferences"]
    assert owner["uid"] == relay.uid and owner["controller"] is True
    deployment = _children(GUARDED)["Deployment"]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("source", "port", "protocol", "admitted"),
    [
        (Pod("apps", {"app": "shop"}), None, "TCP", True),  # same namespace
        (Pod("apps", {}), None, "TCP", True),  # any pod of it
        (Pod("apps", {"app": "shop"}), 587, "TCP", False),  # another port
        (Pod("apps", {"app": "shop"}), None, "UDP", False),  # another protocol
        (Pod("shop", {"app": "shop"}), None, "TCP", False),  # another namespace
        (Pod("jobs", {"mail": "yes"}, {"tier": "batch"}), None, "TCP", True),  # In on namespace labels
        (Pod("jobs", {"mail": "no"}, {"tier": "batch"}), None, "TCP", False),
        (Pod("web-eu", {}, {"team": "web"}), None, "TCP", True),  # selected namespace, any pod
        (Pod("web-eu", {}, {"team": "web"}), 2525, "TCP", False),
        (Pod("web-eu", {}, {"team": "ops"}), None, "TCP", False),
        (Pod("billing", {"app": "invoices"}), None, "TCP", True),  # selected pod in selected namespace
        (Pod("billing", {"app": "reports"}), None, "TCP", False),  # selected namespace, other pod
        (Pod("billing2", {"app": "invoices"}, {"team": "ops"}), None, "TCP", False),  # selected pod, other namespace
    ],
)
def test_ingress_admits_its_namespace_and_the_selected_clients_only(
    source: Pod, port: int | None, protocol: str, admitted: bool
) -> None:
    destination, smtp = relay_pod(GUARDED)
    assert allows_ingress(policies(GUARDED), source, destination, port or smtp, protocol) is admitted


def test_default_policy_admits_only_the_relays_namespace() -> None:
    spec = {"mailFromFQDN": "a.example"}
    destination, smtp = relay_pod(spec)
    assert allows_ingress(policies(spec), Pod("apps", {"any": "pod"}), destination, smtp)
    assert not allows_ingress(policies(spec), Pod("other", {"any": "pod"}), destination, smtp)
    assert not allows_ingress(policies(spec), Pod("kube-system", {}), destination, smtp)
    # Other pods of the namespace are not this policy's business.
    neighbour = Pod("apps", {"app": "shop"}, ports={"http": 8080})
    assert allows_ingress(policies(spec), Pod("other", {}), neighbour, 8080)
    # And egress stays open unless asked.
    assert allows_egress(policies(spec), destination, Pod("anywhere", {}, ip="198.51.100.7"), 443)


def test_without_the_own_namespace_only_the_selected_pods_of_it_get_through() -> None:
    spec = {
        "mailFromFQDN": "a.example",
        "networkPolicy": {"sameNamespace": False},
        "clients": [
            {"podSelector": {"matchLabels": {"app": "web"}}},
            {"namespaceSelector": {"matchLabels": {"team": "web"}}},
        ],
    }
    destination, smtp = relay_pod(spec)
    assert allows_ingress(policies(spec), Pod("apps", {"app": "web"}), destination, smtp)
    assert not allows_ingress(policies(spec), Pod("apps", {"app": "batch"}), destination, smtp)
    assert not allows_ingress(policies(spec), Pod("shop", {"app": "web"}), destination, smtp)
    assert allows_ingress(policies(spec), Pod("web-eu", {}, {"team": "web"}), destination, smtp)


def test_the_metrics_port_is_open_to_scrapers_anywhere_and_smtp_stays_closed() -> None:
    """Prometheus and the operator's resync read the sidecar from their own namespaces; the
    exporter serves counts only (no addresses, no content)."""
    from mailrelay.render import sidecar

    destination, smtp = relay_pod(GUARDED)
    monitoring = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    operator = Pod("mailrelay-system", {"app.kubernetes.io/name": "mailrelay-operator"})
    for scraper in (monitoring, operator):
        assert allows_ingress(policies(GUARDED), scraper, destination, destination.ports[sidecar.PORT_NAME])
        assert not allows_ingress(policies(GUARDED), scraper, destination, smtp)


def test_switched_off_there_is_no_policy_and_every_namespace_gets_through() -> None:
    spec = {"mailFromFQDN": "a.example", "networkPolicy": {"enabled": False}}
    destination, smtp = relay_pod(spec)
    assert policies(spec) == []
    assert allows_ingress(policies(spec), Pod("other", {}), destination, smtp)


@pytest.mark.parametrize(
    ("ip", "port", "protocol", "allowed"),
    [
        ("203.0.113.10", 587, "TCP", True),  # the smarthost
        ("2001:db8::25", 587, "TCP", True),
        ("203.0.113.11", 587, "TCP", False),  # another address on the smarthost port
        ("203.0.113.10", 25, "TCP", False),  # the smarthost, another port
        ("10.96.0.10", 53, "UDP", True),  # DNS
        ("10.96.0.10", 53, "TCP", True),
        ("10.96.0.10", 5353, "UDP", False),
    ],
)
def test_restricted_egress_reaches_dns_and_the_smarthost_only(ip: str, port: int, protocol: str, allowed: bool) -> None:
    source, _ = relay_pod(GUARDED)
    assert allows_egress(policies(GUARDED), source, Pod("elsewhere", ip=ip), port, protocol) is allowed


def test_restricted_egress_without_networks_or_smarthost_opens_the_smtp_port_to_any_address() -> None:
    direct = {"mailFromFQDN": "a.example", "egress": {"restricted": True}}
    source, _ = relay_pod(direct)
    anywhere = Pod("elsewhere", ip="198.51.100.7")
    assert allows_egress(policies(direct), source, anywhere, 25)
    assert not allows_egress(policies(direct), source, anywhere, 587)
    assert not allows_egress(policies(direct), source, anywhere, 443)


# The evaluator itself, on policies written by hand, where the answer is the documented one.
def _policy(peers: list[dict[str, Any]], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"from": peers}
    if ports is not None:
        rule["ports"] = ports
    return {"metadata": {"namespace": "ns"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]}}


TARGET = Pod("ns", {"app": "db"}, ports={"pg": 5432})


def test_evaluator_ands_within_a_peer_and_ors_across_peers() -> None:
    prod, ab = {"matchLabels": {"env": "prod"}}, {"matchLabels": {"a": "b"}}
    both = _policy([{"namespaceSelector": prod, "podSelector": ab}])
    either = _policy([{"namespaceSelector": prod}, {"podSelector": ab}])
    prod_other = Pod("p", {"a": "x"}, {"env": "prod"})
    own_ab = Pod("ns", {"a": "b"})
    prod_ab = Pod("p", {"a": "b"}, {"env": "prod"})
    assert [allows_ingress([both], p, TARGET, 1) for p in (prod_other, own_ab, prod_ab)] == [False, False, True]
    assert [allows_ingress([either], p, TARGET, 1) for p in (prod_other, own_ab, prod_ab)] == [True, True, True]


def test_evaluator_selector_operators_ports_and_policy_scope() -> None:
    def expression(operator: str, *values: str) -> dict[str, Any]:
        return _policy(
            [
                {
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "t", "operator": operator, **({"values": list(values)} if values else {})}
                        ]
                    }
                }
            ]
        )

    pods = [Pod("ns", {"t": "a"}), Pod("ns", {"t": "z"}), Pod("ns", {})]
    assert [allows_ingress([expression("In", "a")], p, TARGET, 1) for p in pods] == [True, False, False]
    assert [allows_ingress([expression("NotIn", "a")], p, TARGET, 1) for p in pods] == [False, True, True]
    assert [allows_ingress([expression("Exists")], p, TARGET, 1) for p in pods] == [True, True, False]
    assert [allows_ingress([expression("DoesNotExist")], p, TARGET, 1) for p in pods] == [False, False, True]
    everyone = _policy([{"namespaceSelector": {}}], ports=[{"port": "pg"}, {"port": 7000, "endPort": 7002}])
    assert allows_ingress([everyone], Pod("x"), TARGET, 5432)
    assert allows_ingress([everyone], Pod("x"), TARGET, 7002)
    assert not allows_ingress([everyone], Pod("x"), TARGET, 7003)
    assert not allows_ingress([everyone], Pod("x"), TARGET, 5432, "UDP")
    deny_all = {"metadata": {"namespace": "ns"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert not allows_ingress([deny_all], Pod("ns"), TARGET, 5432)
    assert allows_ingress([deny_all, everyone], Pod("x"), TARGET, 5432)  # policies add up
    assert allows_ingress([deny_all], Pod("x"), Pod("elsewhere"), 5432)  # not selected: not isolated
    blocks = _policy([{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}])
    assert allows_ingress([blocks], Pod("x", ip="10.2.0.1"), TARGET, 1)
    assert not allows_ingress([blocks], Pod("x", ip="10.1.0.1"), TARGET, 1)


def test_the_guardrails_example_admits_the_ci_runners_it_names() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "guardrails.yaml").read_text()) if d]
    [doc] = [d for d in docs if d["kind"] == "MailRelay"]
    [labels] = [d["metadata"]["labels"] for d in docs if d["kind"] == "Namespace" and "labels" in d["metadata"]]
    spec = doc["spec"]
    relay = parse(doc)
    [policy] = [o for o in render_relay(relay).objects if o["kind"] == "NetworkPolicy"]
    destination = Pod(
        "staging", by_kind(render_relay(relay).objects)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    )
    runner = {"app.kubernetes.io/component": "ci-runner"}
    assert allows_ingress([policy], Pod("payments-ci", runner, labels), destination, 25)
    assert not allows_ingress([policy], Pod("payments-ci", {"app": "web"}, {"team": "payments"}), destination, 25)
    assert not allows_ingress([policy], Pod("other-ci", runner, {"team": "other"}), destination, 25)
    assert allows_egress([policy], destination, Pod("x", ip="203.0.113.25"), spec["relay"]["port"])
    assert not allows_egress([policy], destination, Pod("x", ip="203.0.113.26"), spec["relay"]["port"])
