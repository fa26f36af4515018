"""The real operator process against the emulated API server, over HTTP and watch streams.

One operator serves the whole module; each test works in its own namespace. No kubelet or
controller-manager runs, so tests set Deployment status themselves, and nothing here relies on
garbage collection, defaulting, schema validation or SSA field ownership (the emulator has none).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailrelay.render import CONFIG_HASH_ANNOTATION

from cluster import Cluster, Operator, eventually
from kstatus import kstatus

CHILD_PLURALS = ("configmaps", "deployments", "services", "networkpolicies")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    emulator = Cluster()
    yield emulator
    emulator.close()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    base = tmp_path_factory.mktemp("operator")
    process = Operator(cluster.write_kubeconfig(base / "kubeconfig"), base / "operator.log").start()
    yield process
    process.stop()
    print(process.log()[-5000:])


def relay(namespace: str, name: str = "relay", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mailrelay.dev/v1alpha1", "kind": "MailRelay",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"mailFromFQDN": "apps.example.com", **spec}}


def ready(cluster: Cluster, namespace: str, name: str = "relay") -> dict[str, Any] | None:
    obj = cluster.get("mailrelays", namespace, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)


def wait_reason(cluster: Cluster, namespace: str, reason: str, name: str = "relay") -> dict[str, Any]:
    return eventually(lambda: (c := ready(cluster, namespace, name)) and c["reason"] == reason and c,
                      what=f"Ready reason {reason} in {namespace}")


def wait_children(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        found = {p: cluster.list(p, namespace) for p in CHILD_PLURALS}
        return {p: objs[0] for p, objs in found.items()} if all(len(o) == 1 for o in found.values()) else None

    return eventually(check, what=f"four children in {namespace}")


def roll_out(cluster: Cluster, namespace: str, replicas: int = 1, ready_replicas: int | None = None) -> None:
    """Play the Deployment controller: report the current generation rolled out."""
    [deployment] = cluster.list("deployments", namespace)
    cluster.patch("deployments", namespace, deployment["metadata"]["name"], {"status": {
        "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": replicas if ready_replicas is None else ready_replicas,
        "availableReplicas": replicas if ready_replicas is None else ready_replicas}}, sub="status")


def our_writes(cluster: Cluster, namespace: str) -> list[tuple[str, str]]:
    """Writes to the relay and its children; Events are records, not state."""
    return [w for w in cluster.writes(namespace) if not w[1].startswith("events/")]


def event_reasons(cluster: Cluster, namespace: str) -> list[str]:
    return [e.get("reason") for e in cluster.list("events", namespace)]


def test_create_makes_four_owned_children_and_a_status(cluster: Cluster, operator: Operator) -> None:
    created = cluster.create(relay("create"))
    children = wait_children(cluster, "create")
    for obj in children.values():
        [owner] = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True
        assert owner["kind"] == "MailRelay" and owner["name"] == "relay"
    assert children["services"]["metadata"]["name"] == "mail"
    assert "main.cf" in children["configmaps"]["data"]
    condition = wait_reason(cluster, "create", "RollingOut")
    obj = cluster.get("mailrelays", "create", "relay")
    assert obj is not None
    status = obj["status"]
    assert status["observedGeneration"] == 1 and condition["observedGeneration"] == 1
    assert status["endpoint"] == "mail.create.svc:25"
    # The scale subresource's selector: exactly the Deployment's pods.
    selector = dict(pair.split("=") for pair in status["selector"].split(","))
    assert selector == children["deployments"]["spec"]["selector"]["matchLabels"]
    pod_hash = children["deployments"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert status["configHash"] == pod_hash
    obj = eventually(lambda: (o := cluster.get("mailrelays", "create", "relay")) and  # kopf's state, our prefix
                     "mailrelay.dev/last-handled-configuration" in o["metadata"].get("annotations", {}) and o,
                     what="kopf's diff-base annotation")
    assert not obj["metadata"].get("finalizers")  # deletion is the garbage collector's job
    assert not [a for a in obj["metadata"]["annotations"] if a.startswith("kopf.zalando.org")]
    assert kstatus(obj) == "InProgress"
    eventually(lambda: "Applied" in event_reasons(cluster, "create"), what="an Applied event")


def test_deployment_status_drives_ready_and_kstatus(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("ready", replicas=2))
    wait_children(cluster, "ready")
    roll_out(cluster, "ready", replicas=2, ready_replicas=1)
    wait_reason(cluster, "ready", "RollingOut")
    roll_out(cluster, "ready", replicas=2)
    became_ready = wait_reason(cluster, "ready", "Available")
    obj = cluster.get("mailrelays", "ready", "relay")
    assert obj is not None and obj["status"]["readyReplicas"] == 2 and obj["status"]["replicas"] == 2
    assert kstatus(obj) == "Current" and became_ready["status"] == "True"
    # A status that stays True keeps its transition time; a flip moves it.
    roll_out(cluster, "ready", replicas=2)
    time.sleep(1.5)
    assert ready(cluster, "ready")["lastTransitionTime"] == became_ready["lastTransitionTime"]  # type: ignore[index]
    roll_out(cluster, "ready", replicas=2, ready_replicas=0)
    lost = wait_reason(cluster, "ready", "RollingOut")
    assert lost["status"] == "False"
    assert kstatus(cluster.get("mailrelays", "ready", "relay")) == "InProgress"  # type: ignore[arg-type]
    assert "Ready" in event_reasons(cluster, "ready")


def test_spec_change_rewrites_config_and_rolls_the_pods(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("update"))
    before = wait_children(cluster, "update")
    wait_reason(cluster, "update", "RollingOut")
    cluster.patch("mailrelays", "update", "relay", {"spec": {"mailFromFQDN": "new.example.com", "replicas": 3}})

    def updated() -> bool:
        config = cluster.get("configmaps", "update", "mailrelay-relay") or {}
        return "myorigin = new.example.com" in config.get("data", {}).get("main.cf", "")

    eventually(updated, what="the new main.cf")
    hash_of = lambda d: d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]  # noqa: E731
    after = eventually(lambda: (d := cluster.get("deployments", "update", "mailrelay-relay")) and
                       hash_of(d) != hash_of(before["deployments"]) and d, what="a new pod-template hash")
    assert after["spec"]["replicas"] == 3
    eventually(lambda: cluster.get("mailrelays", "update", "relay")["status"]["observedGeneration"] == 2,  # type: ignore[index]
               what="observedGeneration 2")


def test_deleted_child_is_recreated(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("recreate"))
    first = wait_children(cluster, "recreate")
    for plural in CHILD_PLURALS:
        name = first[plural]["metadata"]["name"]
        cluster.delete(plural, "recreate", name)
        again = eventually(lambda p=plural, n=name: cluster.get(p, "recreate", n), what=f"{plural} back")
        assert again["metadata"]["uid"] != first[plural]["metadata"]["uid"]


def test_edited_child_is_reverted(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("revert"))
    children = wait_children(cluster, "revert")
    original = children["configmaps"]["data"]["main.cf"]
    cluster.patch("configmaps", "revert", "mailrelay-relay", {"data": {"main.cf": "mynetworks = 0.0.0.0/0\n"}})
    eventually(lambda: cluster.get("configmaps", "revert", "mailrelay-relay")["data"]["main.cf"] == original,  # type: ignore[index]
               what="main.cf restored")
    cluster.patch("deployments", "revert", "mailrelay-relay", {"spec": {"replicas": 7}})
    eventually(lambda: cluster.get("deployments", "revert", "mailrelay-relay")["spec"]["replicas"] == 1,  # type: ignore[index]
               what="replicas restored")
    cluster.patch("services", "revert", "mail", {"spec": {"selector": {"app": "something-else"}}})
    eventually(lambda: "app" not in cluster.get("services", "revert", "mail")["spec"]["selector"]  # type: ignore[index]
               or cluster.get("services", "revert", "mail")["spec"]["selector"]["app.kubernetes.io/instance"]  # type: ignore[index]
               == "relay", what="selector restored")


def test_foreign_service_is_left_alone_and_reported(cluster: Cluster, operator: Operator) -> None:
    foreign = cluster.create({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "mail", "namespace": "foreign"},
                              "spec": {"selector": {"app": "legacy-postfix"}, "ports": [{"port": 25}]}})
    mark = len(cluster.server.writes)
    cluster.create(relay("foreign"))
    condition = wait_reason(cluster, "foreign", "ServiceConflict")
    assert "Service mail (owned by no controller) already exists" in condition["message"]
    obj = cluster.get("mailrelays", "foreign", "relay")
    assert kstatus(obj) == "Failed"  # type: ignore[arg-type]
    time.sleep(1)
    stalled_writes = our_writes(cluster, "foreign")
    time.sleep(3)  # more than one resync: still untouched, and a stalled relay causes no writes
    assert our_writes(cluster, "foreign") == stalled_writes
    service = cluster.get("services", "foreign", "mail")
    assert service is not None and service["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert not [w for w in cluster.server.writes[mark:] if w[1] == "services/foreign/mail"]
    assert cluster.get("configmaps", "foreign", "mailrelay-relay") is not None  # the rest is still set up
    assert event_reasons(cluster, "foreign").count("ServiceConflict") == 1  # reported once, not per pass
    cluster.delete("services", "foreign", "mail")
    owned = eventually(lambda: (s := cluster.get("services", "foreign", "mail")) and s["metadata"].get(
        "ownerReferences") and s, what="our Service after the foreign one is gone")
    assert owned["spec"]["selector"]["app.kubernetes.io/instance"] == "relay"
    wait_reason(cluster, "foreign", "RollingOut")


def test_invalid_spec_is_reported_and_changes_no_child(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("invalid", mailFromFQDN="not-a-domain", replicas=-3))
    condition = wait_reason(cluster, "invalid", "InvalidSpec")
    assert "spec.mailFromFQDN" in condition["message"] and "spec.replicas" in condition["message"]
    time.sleep(2)
    assert all(cluster.list(p, "invalid") == [] for p in CHILD_PLURALS)
    eventually(lambda: "InvalidSpec" in event_reasons(cluster, "invalid"), what="an InvalidSpec event")
    # A valid relay made invalid keeps its children exactly as they were.
    cluster.create(relay("invalid", name="good"))
    children = wait_children(cluster, "invalid")
    cluster.patch("mailrelays", "invalid", "good", {"spec": {"allowedNetworks": ["0.0.0.0/0"]}})
    wait_reason(cluster, "invalid", "InvalidSpec", name="good")
    time.sleep(2)
    after = wait_children(cluster, "invalid")
    assert {p: o["metadata"]["resourceVersion"] for p, o in after.items()} == \
        {p: o["metadata"]["resourceVersion"] for p, o in children.items()}


def test_missing_secret_is_reported_then_fixed_and_rotation_rolls_pods(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("secret", relay={"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}))
    condition = wait_reason(cluster, "secret", "SecretNotFound")
    assert "Secret smarthost" in condition["message"]
    assert cluster.list("deployments", "secret") == []  # no broken rollout
    encode = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "smarthost", "namespace": "secret"},
                    "data": {"username": encode("relay")}})
    wait_reason(cluster, "secret", "SecretIncomplete")
    cluster.patch("secrets", "secret", "smarthost", {"data": {"password": encode("first")}})
    children = wait_children(cluster, "secret")
    pod_hash = children["deployments"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    wait_reason(cluster, "secret", "RollingOut")
    cluster.patch("secrets", "secret", "smarthost", {"data": {"password": encode("rotated")}})

    def rolled() -> bool:
        deployment = cluster.get("deployments", "secret", "mailrelay-relay") or {}
        return deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != pod_hash

    eventually(rolled, what="a new pod-template hash after rotation")
    log = operator.log()
    assert "rotated" not in log and "first" not in log  # the Secret's content never reaches the log


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


def settled(cluster: Cluster, namespace: str) -> list[tuple[str, str]]:
    """Create a relay, play its rollout to Ready, and return the writes so far."""
    cluster.create(relay(namespace))
    wait_children(cluster, namespace)
    roll_out(cluster, namespace)
    wait_reason(cluster, namespace, "Available")
    # The first resync after that reports delivery (no relay pods here: Unknown), once.
    eventually(lambda: any(c["type"] == "Delivering" for c in
                           cluster.list("mailrelays", namespace)[0]["status"]["conditions"]),
               what="the Delivering condition")
    time.sleep(1)  # let the last watch events of the rollout be handled
    return our_writes(cluster, namespace)


def test_idle_relays_cause_no_writes(cluster: Cluster, operator: Operator) -> None:
    before = settled(cluster, "idle")
    versions = {p: cluster.list(p, "idle")[0]["metadata"]["resourceVersion"] for p in (*CHILD_PLURALS, "mailrelays")}
    time.sleep(5)  # resync runs every 2 s here
    assert our_writes(cluster, "idle") == before
    assert {p: cluster.list(p, "idle")[0]["metadata"]["resourceVersion"] for p in versions} == versions


def test_restart_makes_no_duplicates_and_no_writes(cluster: Cluster, operator: Operator) -> None:
    before = settled(cluster, "restart")
    operator.stop()
    operator.start()
    eventually(lambda: operator.log().count("Resuming is processed") >= 1, what="the resume pass")
    time.sleep(3)
    assert our_writes(cluster, "restart") == before
    assert all(len(cluster.list(p, "restart")) == 1 for p in CHILD_PLURALS)
    assert ready(cluster, "restart")["status"] == "True"  # type: ignore[index]


def test_liveness_endpoint_answers(tmp_path: Path, cluster: Cluster) -> None:
    import requests

    from smtp_sink import free_port

    port = free_port()
    process = Operator(cluster.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "op.log",
                       args=["--liveness-port", str(port)]).start()
    try:
        response = eventually(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1),
                              what="/healthz", timeout=30)
        assert response.status_code == 200
    finally:
        process.stop()


def test_named_namespaces_are_the_only_ones_served(tmp_path: Path) -> None:
    emulator = Cluster()
    process = Operator(emulator.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "op.log",
                       args=["--liveness-port", "0", "--namespace", "served"])
    try:
        process.start()
        for namespace in ("served", "ignored"):
            emulator.create(relay(namespace))
        wait_children(emulator, "served")
        time.sleep(3)
        assert all(emulator.list(p, "ignored") == [] for p in CHILD_PLURALS)
        assert not (emulator.get("mailrelays", "ignored", "relay") or {}).get("status")
    finally:
        process.stop()
        emulator.close()


def test_peering_keeps_a_standby_replica_idle_until_the_active_one_leaves(tmp_path: Path) -> None:
    emulator = Cluster()
    emulator.create_cluster_object("/apis/kopf.dev/v1/clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "mailrelay-operator"}})
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    active = Operator(kubeconfig, tmp_path / "active.log", args=["--liveness-port", "0", "--peering",
                                                                  "mailrelay-operator"])
    standby = Operator(kubeconfig, tmp_path / "standby.log", args=["--liveness-port", "0", "--peering",
                                                                    "mailrelay-operator", "--standby", "-v"])
    try:
        active.start()
        time.sleep(3)
        standby.start()
        eventually(lambda: "Pausing the watch-stream for mailrelays" in standby.log(), what="kopf to pause")
        eventually(lambda: "resync paused: " in standby.log(), what="the resync loop to pause")
        emulator.create(relay("peering-a"))
        wait_children(emulator, "peering-a")
        eventually(lambda: "reconciled peering-a/relay" in active.log(), what="the active replica's pass")
        assert "reconciled peering-a/relay" not in standby.log()
        active.stop()  # a graceful stop leaves the peering, so the standby takes over at once
        emulator.create(relay("peering-b"))
        wait_children(emulator, "peering-b")
        eventually(lambda: "reconciled peering-b/relay" in standby.log(), what="the former standby's pass")
        eventually(lambda: "resync resumed: this replica is active" in standby.log(), what="the resync to resume")
    finally:
        standby.stop()
        active.stop()
        emulator.close()


def test_renamed_service_replaces_the_old_one(cluster: Cluster, operator: Operator) -> None:
    cluster.create(relay("rename"))
    old = wait_children(cluster, "rename")["services"]
    cluster.patch("mailrelays", "rename", "relay", {"spec": {"service": {"name": "smtp", "port": 2525}}})
    new = eventually(lambda: cluster.get("services", "rename", "smtp"), what="the new Service")
    assert new["spec"]["ports"][0]["port"] == 2525
    eventually(lambda: cluster.get("services", "rename", old["metadata"]["name"]) is None, what="the old one gone")
    condition = wait_reason(cluster, "rename", "RollingOut")
    assert cluster.get("mailrelays", "rename", "relay")["status"]["endpoint"] == "smtp.rename.svc:2525"  # type: ignore[index]
    assert condition["status"] == "False"


def test_a_foreign_service_with_our_labels_is_never_pruned(cluster: Cluster, operator: Operator) -> None:
    labels = {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": "relay"}
    cluster.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lookalike", "namespace": "lookalike",
                                                                        "labels": labels},
                    "spec": {"ports": [{"port": 25}]}})
    cluster.create(relay("lookalike"))
    eventually(lambda: cluster.get("services", "lookalike", "mail"), what="our Service")
    time.sleep(3)  # more than one resync
    assert cluster.get("services", "lookalike", "lookalike") is not None


def test_network_policy_switched_off_is_pruned_and_a_foreign_one_kept(cluster: Cluster, operator: Operator) -> None:
    labels = {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": "relay"}
    cluster.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "lookalike", "namespace": "netpol", "labels": labels},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    cluster.create(relay("netpol"))
    ours = eventually(lambda: cluster.get("networkpolicies", "netpol", "mailrelay-relay"), what="our policy")
    assert ours["metadata"]["ownerReferences"][0]["kind"] == "MailRelay"
    cluster.patch("mailrelays", "netpol", "relay", {"spec": {"networkPolicy": {"enabled": False}}})
    eventually(lambda: cluster.get("networkpolicies", "netpol", "mailrelay-relay") is None, what="our policy gone")
    time.sleep(3)  # more than one resync
    assert cluster.get("networkpolicies", "netpol", "lookalike") is not None
    cluster.patch("mailrelays", "netpol", "relay", {"spec": {"networkPolicy": {"enabled": True}}})
    eventually(lambda: cluster.get("networkpolicies", "netpol", "mailrelay-relay"), what="our policy back")


def test_run_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""}
    result = subprocess.run([sys.executable, "-m", "mailrelay", "run"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "no cluster to talk to" in result.stderr and "mailrelay-operator local" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_child_the_api_server_refuses_stalls_the_relay_without_a_write_loop(cluster: Cluster,
                                                                              operator: Operator) -> None:
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
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "smarthost", "namespace": "badsecret"},
                    "data": {"username": encode("team:relay"), "password": encode("pass\nword")}})
    cluster.create(relay("badsecret", relay={"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}))
    condition = wait_reason(cluster, "badsecret", "SecretInvalid")
    assert "username must not contain ':'" in condition["message"] and "word" not in condition["message"]
    assert cluster.list("deployments", "badsecret") == []  # no pod that would crash-loop
