"""Faults a real API server does not produce on demand, against the emulated API server.

EMULATED: tests/support/kube_emulator.py serves the API here so a test can inject 409, 429, 500 and 503 answers
and check that the operator retries until it converges. It has no admission, schema validation,
server-side apply field ownership, garbage collection or RBAC, so nothing else is tested on it: the
operator's behaviour is tested on the real control plane in test_operator_cluster.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.emulator import Cluster, roll_out, wait_children, wait_reason
from support.operator import OperatorProcess
from support.samples import relay
from support.wait import eventually, present

CHILD_PLURALS = ("configmaps", "deployments", "services", "networkpolicies")


@pytest.fixture(scope="module")
def operator(emulator: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    base = tmp_path_factory.mktemp("operator")
    process = OperatorProcess.run(emulator.write_kubeconfig(base / "kubeconfig"), base / "operator.log").start()
    yield process
    process.stop()
    print(process.log()[-5000:])


def our_writes(emulator: Cluster, namespace: str) -> list[tuple[str, str]]:
    """Writes to the relay and its children; Events are records, not state."""
    return [w for w in emulator.writes(namespace) if not w[1].startswith("events/")]


def test_api_errors_are_retried_until_converged(emulator: Cluster, operator: OperatorProcess) -> None:
    # Children are created with a POST; a 409 there reads as "someone else's name" and is checked again.
    emulator.fail("POST", "deployments", 500, times=3)
    emulator.fail("POST", "configmaps", 409, times=2)
    emulator.fail("GET", "services", 429, times=2)  # the Service cache's list: listed again
    emulator.fail("PATCH", "mailrelays", 503, times=2, sub="status")
    emulator.create(relay("errors"))
    wait_children(emulator, "errors")
    wait_reason(emulator, "errors", "RollingOut")
    roll_out(emulator, "errors")
    wait_reason(emulator, "errors", "Available")
    assert all(f.times == 0 for f in emulator.server.faults)


def relay_pod(
    namespace: str, name: str, message: str, relay_name: str = "relay", owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A relay pod being deleted whose container ended with `message` (as the kubelet reports it),
    controlled by `owner` (a ReplicaSet, as the Deployment controller makes them) if given."""
    refs = (
        [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
        if owner
        else []
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": refs,
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


def test_a_drain_that_left_mail_is_reported_once_as_an_event(emulator: Cluster, operator: OperatorProcess) -> None:
    emulator.create(relay("drained"))
    wait_children(emulator, "drained")
    left = (
        "mailrelay-drain: 7 message(s) left in the queue (no other replica took them at mail.drained.svc:25 "
        "within 30s); they are lost with this pod's emptyDir\n"
    )
    [deployment] = emulator.list("deployments", "drained")
    labels = {
        "app.kubernetes.io/name": "mailrelay",
        "app.kubernetes.io/instance": "relay",
        "app.kubernetes.io/managed-by": "mailrelay-operator",
    }
    replicas = emulator.create(
        {  # as the Deployment controller makes it
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "mailrelay-relay-5d8f",
                "namespace": "drained",
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment["metadata"]["name"],
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}}},
        }
    )
    # A look-alike with the relay's labels and a message of its own, controlled by nothing of the relay's.
    emulator.create(relay_pod("drained", "mailrelay-relay-fake", "mailrelay-drain: 99 message(s) left in the queue"))
    emulator.create(relay_pod("drained", "mailrelay-relay-abc", left, owner=replicas))
    emulator.create(
        relay_pod("drained", "mailrelay-relay-def", "mailrelay-drain: queue empty, nothing left\n", owner=replicas)
    )
    emulator.create(relay_pod("drained", "mailrelay-gone-xyz", left.replace("7", "2", 1), relay_name="gone"))

    def reports() -> list[dict[str, Any]]:
        return [e for e in emulator.list("events", "drained") if e.get("reason") == "QueueLeftBehind"]

    eventually(lambda: len(reports()) == 2, what="two drain reports")
    emulator.patch("pods", "drained", "mailrelay-relay-abc", {"metadata": {"annotations": {"seen": "again"}}})
    time.sleep(2)  # a second report would be posted by now
    by_object = {(e["regarding"]["kind"], e["regarding"]["name"]): e for e in reports()}
    assert set(by_object) == {("MailRelay", "relay"), ("Pod", "mailrelay-gone-xyz")}
    event = by_object[("MailRelay", "relay")]
    assert event["type"] == "Warning"
    assert event["note"] == (
        "pod mailrelay-relay-abc: 7 message(s) left in the queue when it stopped (no other replica took them at "
        "mail.drained.svc:25 within 30s); they could not be handed to another replica and are lost with the "
        "pod's emptyDir"
    )
    assert "2 message(s) left" in by_object[("Pod", "mailrelay-gone-xyz")]["note"]


def test_a_child_the_api_server_refuses_stalls_the_relay_without_a_write_loop(
    emulator: Cluster, operator: OperatorProcess
) -> None:
    """HTTP 422 for the Deployment (emulated: our validation keeps a real server from ever saying it)."""
    emulator.fail("POST", "deployments", 422, times=100, namespace="refused")
    emulator.create(relay("refused"))
    condition = wait_reason(emulator, "refused", "ChildRefused")
    assert "the API server refused Deployment mailrelay-relay" in condition["message"]
    status = present(emulator.get("mailrelays", "refused", "relay"))["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ChildRefused"
    assert status["refusedChild"].startswith("Deployment/mailrelay-relay@")
    time.sleep(1)
    attempts, writes = emulator.faults_left("deployments", "refused"), our_writes(emulator, "refused")
    time.sleep(6)  # three resync periods: the same Deployment is not sent again, nothing is written
    assert emulator.faults_left("deployments", "refused") == attempts
    assert our_writes(emulator, "refused") == writes
    # Any change to the relay renders a different Deployment, which is tried again.
    for fault in emulator.server.faults:
        if fault.namespace == "refused":
            fault.times = 0
    emulator.patch("mailrelays", "refused", "relay", {"spec": {"replicas": 2}})
    wait_reason(emulator, "refused", "RollingOut")
    assert emulator.list("deployments", "refused")[0]["spec"]["replicas"] == 2
    assert "refusedChild" not in present(emulator.get("mailrelays", "refused", "relay"))["status"]


def test_a_secret_that_cannot_work_is_reported_before_any_pod(emulator: Cluster, operator: OperatorProcess) -> None:
    encode = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "smarthost", "namespace": "badsecret", "annotations": {"mailrelay.dev/relays": "*"}},
            "data": {"username": encode("team:relay"), "password": encode("pass\nword")},
        }
    )
    emulator.create(relay("badsecret", relay={"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}))
    condition = wait_reason(emulator, "badsecret", "SecretInvalid")
    assert "username must not contain ':'" in condition["message"] and "word" not in condition["message"]
    assert emulator.list("deployments", "badsecret") == []  # no pod that would crash-loop
