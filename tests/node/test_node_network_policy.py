"""The relay's NetworkPolicy as a real implementation enforces it (kube-router's firewall on the node), in place of
the test-side evaluator that judged the rendered policy by our own reading of the API's semantics.

MailRelays are applied with kubectl and the operator writes their policies; client pods in labelled namespaces try
TCP connections to a relay pod, on the SMTP port and on the metrics port. A refused connection is refused by the
policy: every relay pod listens on both ports, and the same sources reach a relay without a policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from support.nodekit import exec_in

if TYPE_CHECKING:
    from node import NodeCluster

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]
SMTP, METRICS = 25, 9154


@dataclass
class Policies:
    tag: str
    relays: dict[str, list[str]]  # relay -> its pods' addresses
    example: str  # examples/guardrails.yaml's relay namespace

    def ns(self, name: str) -> str:
        return f"{name}-{self.tag}"


def clients(tag: str) -> list[dict[str, Any]]:
    """spec.clients of the guarded relay: a namespace by label; a pod by In in a namespace by name; both by In."""
    return [
        {"namespaceSelector": {"matchLabels": {"team": "web"}}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": f"billing-{tag}"}},
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["invoices"]}]},
        },
        {
            "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]}]},
            "podSelector": {"matchLabels": {"mail": "yes"}},
        },
    ]


# namespace (suffixed with the tag) -> its labels, and its client pods -> their labels.
NAMESPACES: dict[str, tuple[dict[str, str], dict[str, dict[str, str]]]] = {
    "apps": ({}, {"shop": {"app": "shop"}, "web": {"app": "web"}}),
    "shop": ({}, {"web": {"app": "web"}}),
    "web-eu": ({"team": "web"}, {"any": {}}),
    "billing": ({}, {"invoices": {"app": "invoices"}, "reports": {"app": "reports"}}),
    "billing2": ({"team": "ops"}, {"invoices": {"app": "invoices"}}),
    "jobs": ({"tier": "batch"}, {"yes": {"mail": "yes"}, "no": {"mail": "no"}}),
}


def relay(name: str, namespace: str, sink: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "mailFromFQDN": "apps.example.com",
            "relay": {"host": sink, "port": 587},
            "service": {"name": f"mail-{name}"},
            **spec,
        },
    }


@pytest.fixture(scope="module")
def policies(node: NodeCluster, operator: str, run_pod: Callable[..., str]) -> Iterator[Policies]:
    tag = uuid.uuid4().hex[:6]
    made = Policies(tag, {}, "staging")
    for name, (labels, pods) in NAMESPACES.items():
        node.kubectl("create", "namespace", made.ns(name))
        if labels:
            node.kubectl("label", "namespace", made.ns(name), *(f"{k}={v}" for k, v in labels.items()))
        for pod, pod_labels in pods.items():
            run_pod(
                made.ns(name),
                pod,
                "client",
                *([f"--labels={','.join(f'{k}={v}' for k, v in pod_labels.items())}"] if pod_labels else []),
                wait=False,
            )
    apps = made.ns("apps")
    run_pod(apps, "sink", "sink", "--labels=app=sink")
    run_pod(apps, "other-sink", "sink", "--labels=app=other-sink", wait=False)  # a listener on 587 elsewhere
    sink = node.get("pod", "sink", "-n", apps)["status"]["podIP"]
    relays = [
        # Ingress from the clients above; egress only to DNS, the sink's address on 587, and its own replicas.
        relay(
            "guarded",
            apps,
            sink,
            replicas=2,
            clients=clients(tag),
            egress={"restricted": True, "smarthostNetworks": [f"{sink}/32"]},
        ),
        # Only the selected pods of its own namespace and of team=web namespaces; not the rest of its namespace.
        relay(
            "narrow",
            apps,
            sink,
            replicas=2,
            networkPolicy={"sameNamespace": False},
            clients=[
                {"podSelector": {"matchLabels": {"app": "web"}}},
                {"namespaceSelector": {"matchLabels": {"team": "web"}}},
            ],
        ),
        relay("open", apps, sink, networkPolicy={"enabled": False}),
    ]
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(relays))
    # The example as shipped: its namespaces (staging, payments-ci) and relay, plus CI runner pods.
    node.kubectl("apply", "-f", str(ROOT / "examples" / "guardrails.yaml"))
    node.kubectl("create", "namespace", made.ns("other-ci"))
    node.kubectl("label", "namespace", made.ns("other-ci"), "team=other")
    runner = "--labels=app.kubernetes.io/component=ci-runner"
    for namespace, pod, flag in (
        ("payments-ci", "runner", runner),
        ("payments-ci", "web", "--labels=app=web"),
        (made.ns("other-ci"), "runner", runner),
    ):
        run_pod(namespace, pod, "client", flag, wait=False)
    for namespace in (apps, made.example):
        done = node.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", "mailrelay", "--all", "--timeout=300s", check=False
        )
        assert done.returncode == 0, node.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
    for namespace in [made.ns(n) for n in NAMESPACES] + ["payments-ci", made.ns("other-ci")]:
        node.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod", "--all", "--timeout=180s")
    for namespace in (apps, made.example):
        for pod in node.get("pods", "-n", namespace, "-l", "app.kubernetes.io/name=mailrelay")["items"]:
            made.relays.setdefault(
                pod["metadata"]["labels"]["app.kubernetes.io/instance"] + ("" if namespace == apps else "@example"), []
            ).append(pod["status"]["podIP"])
    yield made
    for namespace in [made.ns(n) for n in (*NAMESPACES, "other-ci")] + ["staging", "payments-ci"]:
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def connects(
    node: NodeCluster, namespace: str, pod: str, address: str, port: int, container: str | None = None
) -> bool:
    """Whether a TCP connection from the pod opens (bash's /dev/tcp; a refusal or 5 s of silence is False)."""
    done = exec_in(
        node,
        namespace,
        pod,
        "timeout",
        "5",
        "bash",
        "-c",
        f"exec 3<>/dev/tcp/{address}/{port}",
        check=False,
        container=container,
    )
    return done.returncode == 0


INGRESS = [  # (client namespace, client pod, relay, port, admitted)
    ("apps", "shop", "guarded", SMTP, True),  # its own namespace, any pod
    ("shop", "web", "guarded", SMTP, False),  # another namespace
    ("shop", "web", "guarded", METRICS, True),  # the metrics port is open to scrapers anywhere
    ("web-eu", "any", "guarded", SMTP, True),  # a namespace selected by label, any pod of it
    ("billing", "invoices", "guarded", SMTP, True),  # the selected pod in the selected namespace
    ("billing", "reports", "guarded", SMTP, False),  # the selected namespace, another pod
    ("billing2", "invoices", "guarded", SMTP, False),  # the selected pod's labels, another namespace
    ("jobs", "yes", "guarded", SMTP, True),  # In on namespace labels AND the pod's labels
    ("jobs", "no", "guarded", SMTP, False),
    ("apps", "web", "narrow", SMTP, True),  # sameNamespace false: a podSelector picks pods of its namespace
    ("apps", "shop", "narrow", SMTP, False),  # and only those
    ("shop", "web", "narrow", SMTP, False),  # the same labels elsewhere are not selected
    ("web-eu", "any", "narrow", SMTP, True),
    ("apps", "shop", "narrow", METRICS, True),
    ("shop", "web", "open", SMTP, True),  # networkPolicy.enabled false: no policy, every namespace
]


@pytest.mark.parametrize(
    ("namespace", "pod", "name", "port", "admitted"),
    INGRESS,
    ids=[f"{n}/{p}->{r}:{port}" for n, p, r, port, _ in INGRESS],
)
def test_ingress(
    node: NodeCluster, policies: Policies, namespace: str, pod: str, name: str, port: int, admitted: bool
) -> None:
    address = policies.relays[name][0]
    assert connects(node, policies.ns(namespace), pod, address, port) is admitted


def test_the_replicas_reach_each_other_on_the_smtp_port_for_the_drains_hand_off(
    node: NodeCluster, policies: Policies
) -> None:
    """Neither the narrow relay's ingress (sameNamespace false) nor the guarded one's restricted egress keeps a
    replica from the other, which a leaving pod hands its queue to; another relay's pods stay out of reach."""
    apps = policies.ns("apps")
    for name in ("guarded", "narrow"):
        pods = node.get("pods", "-n", apps, "-l", f"app.kubernetes.io/instance={name}")["items"]
        source, target = pods[0]["metadata"]["name"], pods[1]["status"]["podIP"]
        assert connects(node, apps, source, target, SMTP, container="postfix"), name
    guarded = node.get("pods", "-n", apps, "-l", "app.kubernetes.io/instance=guarded")["items"][0]["metadata"]["name"]
    assert not connects(node, apps, guarded, policies.relays["open"][0], SMTP, container="postfix")


def test_restricted_egress_reaches_dns_and_the_smarthost_port_at_its_network_only(
    node: NodeCluster, policies: Policies
) -> None:
    apps = policies.ns("apps")
    pod = node.get("pods", "-n", apps, "-l", "app.kubernetes.io/instance=guarded")["items"][0]["metadata"]["name"]
    sink = node.get("pod", "sink", "-n", apps)["status"]["podIP"]
    other = node.get("pod", "other-sink", "-n", apps)["status"]["podIP"]
    resolved = exec_in(
        node, apps, pod, "getent", "hosts", "kubernetes.default.svc.cluster.local", check=False, container="postfix"
    )
    assert resolved.returncode == 0, resolved  # CoreDNS answered: port 53 is open
    assert connects(node, apps, pod, sink, 587, container="postfix")  # the smarthost's address and port
    assert not connects(node, apps, pod, sink, 25, container="postfix")  # the same address, another port
    assert not connects(node, apps, pod, other, 587, container="postfix")  # the port, another address
    narrow = node.get("pods", "-n", apps, "-l", "app.kubernetes.io/instance=narrow")["items"][0]["metadata"]["name"]
    for address, port in ((sink, 25), (other, 587)):  # both listen: unrestricted egress reaches them
        assert connects(node, apps, narrow, address, port, container="postfix"), (address, port)


RUNNERS = [("payments-ci", "runner", True), ("payments-ci", "web", False), ("other-ci", "runner", False)]


@pytest.mark.parametrize(("namespace", "pod", "admitted"), RUNNERS)
def test_the_guardrails_example_admits_the_ci_runners_it_names(
    node: NodeCluster, policies: Policies, namespace: str, pod: str, admitted: bool
) -> None:
    source = namespace if namespace == "payments-ci" else policies.ns(namespace)
    assert connects(node, source, pod, policies.relays["relay@example"][0], SMTP) is admitted
