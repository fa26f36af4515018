"""Faults a real API server does not produce on demand, against the emulated API server.

EMULATED: tests/kube_emulator.py serves the API here so a test can inject 409, 429, 500 and 503 answers
and check that the operator retries until it converges. It has no admission, schema validation,
server-side apply field ownership, garbage collection or RBAC, so nothing else is tested on it: the
operator's behaviour is tested on the real control plane in test_operator_cluster.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Operator, eventually

CHILD_PLURALS = ("configmaps", "deployments", "services", "networkpolicies")


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    base = tmp_path_factory.mktemp("operator")
    process = Operator(cluster.write_kubeconfig(base / "kubeconfig"), base / "operator.log").start()
    yield process
    process.stop()
    print(process.log()[-5000:])


def relay(namespace: str, name: str = "relay", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mailFromFQDN": "apps.example.com", **spec},
    }


def ready(cluster: Cluster, namespace: str, name: str = "relay") -> dict[str, Any] | None:
    obj = cluster.get("mailrelays", namespace, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)


def wait_reason(cluster: Cluster, namespace: str, reason: str, name: str = "relay") -> dict[str, Any]:
    return eventually(
        lambda: (c := ready(cluster, namespace, name)) and c["reason"] == reason and c,
        what=f"Ready reason {reason} in {namespace}",
    )


def wait_children(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        found = {p: cluster.list(p, namespace) for p in CHILD_PLURALS}
        return {p: objs[0] for p, objs in found.items()} if all(len(o) == 1 for o in found.values()) else None

    return eventually(check, what=f"four children in {namespace}")


def roll_out(cluster: Cluster, namespace: str, replicas: int = 1, ready_replicas: int | None = None) -> None:
    """Play the Deployment controller: report the current generation rolled out."""
    [deployment] = cluster.list("deployments", namespace)
    cluster.patch(
        "deployments",
        namespace,
        deployment["metadata"]["name"],
        {
            "status": {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas if ready_replicas is None else ready_replicas,
                "availableReplicas": replicas if ready_replicas is None else ready_replicas,
            }
        },
        sub="status",
    )


def our_writes(cluster: Cluster, namespace: str) -> list[tuple[str, str]]:
    """Writes to the relay and its children; Events are records, not state."""
    return [w for w in cluster.writes(namespace) if not w[1].startswith("events/")]


def test_api_errors_are_retried_until_converged(cluster: Cluster, operator: Operator) -> None:
    cluster.fail("PATCH", "deployments", 500, times=3)
    cluster.fail("PATCH", "configmaps", 409, times=2)
    cluster.fail("GET", "services", 429, times=2)
    cluster.fail("PATCH", "mailrelays", 503, times=2, sub="status")
    cluster.create(relay("errors"))
    wait_children(cluster, "errors")
    wait_reason(cluster, "errors", "RollingOut")
    roll_out(cluster, "errors")
    wait_reason(cluster, "errors", "Available")
    assert all(f.times == 0 for f in cluster.server.faults)


def test_run_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""}
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "no cluster to talk to" in result.stderr and "mailrelay-operator local" in result.stderr
    assert "Traceback" not in result.stderr


def relay_pod(namespace: str, name: str, message: str, relay_name: str = "relay") -> dict[str, Any]:
    """A relay pod being deleted whose container ended with `message` (as the kubelet reports it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "labels": {
                "app.kubernetes.io/name": "mailrelay",
                "app.kubernetes.io/instance": relay_name,
                "app.kubernetes.io/managed-by": "mailrelay-operator",
            },
        },
        "spec": {"containers": [{"name": "postfix", "image": "postfix"}]},
        "status": {
            "containerStatuses": [{"name": "postfix", "state": {"terminated": {"exitCode": 0, "message": message}}}]
        },
    }


def test_a_drain_that_left_mail_is_reported_once_as_an_event(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("drained"))
    wait_children(cluster, "drained")
    left = (
        "mailrelay-drain: 7 message(s) left in the queue (no other replica took them at mail.drained.svc:25 "
        "within 30s); they are lost with this pod's emptyDir\n"
    )
    cluster.create(relay_pod("drained", "mailrelay-relay-abc", left))
    cluster.create(relay_pod("drained", "mailrelay-relay-def", "mailrelay-drain: queue empty, nothing left\n"))
    cluster.create(relay_pod("drained", "mailrelay-gone-xyz", left.replace("7", "2", 1), relay_name="gone"))

    def reports() -> list[dict[str, Any]]:
        return [e for e in cluster.list("events", "drained") if e.get("reason") == "QueueLeftBehind"]

    eventually(lambda: len(reports()) == 2, what="two drain reports")
    cluster.patch("pods", "drained", "mailrelay-relay-abc", {"metadata": {"annotations": {"seen": "again"}}})
    time.sleep(2)  # a second report would be posted by now
    by_object = {(e["regarding"]["kind"], e["regarding"]["name"]): e for e in reports()}
    assert set(by_object) == {("MailRelay", "relay"), ("Pod", "mailrelay-gone-xyz")}
    event = by_object[("MailRelay", "relay")]
    assert event["type"] == "Warning"
    assert event["note"] == f"pod mailrelay-relay-abc: {left.strip()}"
    assert "2 message(s) left" in by_object[("Pod", "mailrelay-gone-xyz")]["note"]


def test_a_child_the_api_server_refuses_stalls_the_relay_without_a_write_loop(
    cluster: Cluster, operator: Operator
) -> None:
    """HTTP 422 for the Deployment (emulated: our validation keeps a real server from ever saying it)."""
    cluster.fail("PATCH", "deployments", 422, times=100, namespace="refused")
    cluster.create(relay("refused"))
    condition = wait_reason(cluster, "refused", "ChildRefused")
    assert "the API server refused Deployment mailrelay-relay" in condition["message"]
    status = cluster.get("mailrelays", "refused", "relay")["status"]  # type: ignore[index]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ChildRefused"
    assert status["refusedChild"].startswith("Deployment/mailrelay-relay@")
    time.sleep(1)
    attempts, writes = cluster.faults_left("deployments", "refused"), our_writes(cluster, "refused")
    time.sleep(6)  # three resync periods: the same Deployment is not sent again, nothing is written
    assert cluster.faults_left("deployments", "refused") == attempts
    assert our_writes(cluster, "refused") == writes
    # Any change to the relay renders a different Deployment, which is tried again.
    for fault in cluster.server.faults:
        if fault.namespace == "refused":
            fault.times = 0
    cluster.patch("mailrelays", "refused", "relay", {"spec": {"replicas": 2}})
    wait_reason(cluster, "refused", "RollingOut")
    assert cluster.list("deployments", "refused")[0]["spec"]["replicas"] == 2
    assert "refusedChild" not in cluster.get("mailrelays", "refused", "relay")["status"]  # type: ignore[index]


def test_a_secret_that_cannot_work_is_reported_before_any_pod(cluster: Cluster, operator: Operator) -> None:
    encode = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "smarthost", "namespace": "badsecret", "annotations": {"mailrelay.dev/relays": "*"}},
            "data": {"username": encode("team:relay"), "password": encode("pass\nword")},
        }
    )
    cluster.create(relay("badsecret", relay={"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}))
    condition = wait_reason(cluster, "badsecret", "SecretInvalid")
    assert "username must not contain ':'" in condition["message"] and "word" not in condition["message"]
    assert cluster.list("deployments", "badsecret") == []  # no pod that would crash-loop
