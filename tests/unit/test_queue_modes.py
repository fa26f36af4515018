"""Queue modes, disruption budget and spread as rendered and reconciled: what is created, switched,
refused and pruned, against the in-memory store of test_apply."""

from __future__ import annotations

import copy
from typing import Any

from mailrelay.api import conditions as cond
from mailrelay.controller import drainreport
from mailrelay.controller.reconcile import reconcile
from mailrelay.render.relay import CONTAINER, TERMINATION_GRACE_SECONDS, render_relay

from support.fake_api import Store
from support.samples import by_kind, make_relay, relay_object

PERSISTENT = {"storage": {"size": "2Gi", "storageClassName": "fast-ssd"}}


class RelayStore(Store):
    """The store plus the relay itself and its status subresource, which reconcile reads and writes."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.relay = relay_object(spec)
        self.objects[("MailRelay", "apps", "relay")] = self.relay

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.relay["status"] = copy.deepcopy(status)
        return self.relay

    def edit(self, **spec: Any) -> None:
        self.relay["spec"].update(spec)
        self.relay["metadata"]["generation"] += 1

    def ready(self, kind: str) -> None:
        """Play the workload controller: every wanted pod ready with the current template."""
        obj = self.objects[(kind, "apps", "mailrelay-relay")]
        n = obj["spec"]["replicas"]
        obj["status"] = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": n,
            "readyReplicas": n,
            "updatedReplicas": n,
        }

    def kinds(self) -> set[str]:
        return {kind for kind, _, _ in self.objects if kind != "MailRelay"}


def run(store: RelayStore) -> Any:
    return reconcile(store, copy.deepcopy(store.relay), clock="2026-01-01T00:00:00Z")


def test_persistent_queue_is_a_stateful_set_with_a_claim_per_pod() -> None:
    relay = make_relay({"mailFromFQDN": "a.example", "replicas": 3, "queue": PERSISTENT})
    children = by_kind(render_relay(relay))
    workload, budget = children["StatefulSet"], children["PodDisruptionBudget"]
    assert workload["kind"] == "StatefulSet"
    [claim] = workload["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "queue"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "2Gi"}},
        "storageClassName": "fast-ssd",
    }
    pod = workload["spec"]["template"]["spec"]
    assert "queue" not in {v["name"] for v in pod["volumes"]}  # the claim template provides it
    [container] = [c for c in pod["containers"] if c["name"] == CONTAINER]
    assert {"name": "queue", "mountPath": "/var/spool/postfix"} in container["volumeMounts"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MAILRELAY_QUEUE_PERSISTENT"] == "1"
    assert budget["spec"] == {"maxUnavailable": 1, "selector": workload["spec"]["selector"]}


def test_the_drain_fits_in_the_grace_period_and_hands_off_to_the_relays_service() -> None:
    relay = make_relay({"mailFromFQDN": "a.example", "service": {"name": "smtp", "port": 2525}})
    deployment = by_kind(render_relay(relay))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == CONTAINER]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MAILRELAY_HANDOFF_TARGET"] == "smtp.apps.svc:2525"
    assert "MAILRELAY_QUEUE_PERSISTENT" not in env
    phases = sum(int(env[f"MAILRELAY_{p}_SECONDS"]) for p in ("ENDPOINT_WAIT", "SESSION_WAIT", "DRAIN", "HANDOFF"))
    assert 5 <= int(env["MAILRELAY_ENDPOINT_WAIT_SECONDS"]) <= 10
    assert phases + 5 <= pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_SECONDS
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert {"name": "queue", "emptyDir": {}} in pod["volumes"]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
        }
    ]


def test_budget_only_from_two_replicas_and_pruned_below() -> None:
    store = RelayStore({"mailFromFQDN": "a.example", "replicas": 2})
    run(store)
    assert ("PodDisruptionBudget", "apps", "mailrelay-relay") in store.objects
    store.edit(replicas=1)
    outcome = run(store)
    assert ("PodDisruptionBudget", "apps", "mailrelay-relay") not in store.objects
    assert ("deleted", "PodDisruptionBudget") in {(c.action, c.kind) for c in outcome.children.children}
    store.writes.clear()
    run(store)
    assert not [w for w in store.writes if w[0] == "delete"]


def test_a_budget_that_is_not_ours_is_left_alone() -> None:
    store = RelayStore({"mailFromFQDN": "a.example", "replicas": 1})
    foreign = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "mailrelay-relay", "namespace": "apps", "uid": "someone-else"},
    }
    store.objects[("PodDisruptionBudget", "apps", "mailrelay-relay")] = foreign
    run(store)
    assert store.objects[("PodDisruptionBudget", "apps", "mailrelay-relay")] == foreign


def test_switching_to_a_persistent_queue_keeps_the_deployment_until_the_stateful_set_is_ready() -> None:
    store = RelayStore({"mailFromFQDN": "a.example", "replicas": 2})
    run(store)
    store.ready("Deployment")
    store.edit(queue=PERSISTENT)
    outcome = run(store)
    assert {"Deployment", "StatefulSet"} <= store.kinds()
    assert outcome.assessment.reason == cond.SWITCHING_QUEUE and outcome.assessment.reconciling
    assert "hand their queue" in outcome.assessment.message
    store.ready("StatefulSet")
    run(store)
    assert "Deployment" not in store.kinds() and "StatefulSet" in store.kinds()
    assert run(store).assessment.ready
    # And back: the StatefulSet's pods hand their queue to the Deployment's once those are ready.
    store.edit(queue={})
    run(store)
    assert {"Deployment", "StatefulSet"} <= store.kinds()
    store.ready("Deployment")
    run(store)
    assert "StatefulSet" not in store.kinds()


def test_changing_the_claim_of_a_running_relay_is_refused_with_a_clear_condition() -> None:
    store = RelayStore({"mailFromFQDN": "a.example", "queue": PERSISTENT})
    run(store)
    before = copy.deepcopy(store.objects[("StatefulSet", "apps", "mailrelay-relay")])
    store.edit(queue={"storage": {"size": "5Gi", "storageClassName": "fast-ssd"}})
    outcome = run(store)
    assert outcome.assessment.reason == cond.QUEUE_STORAGE_IMMUTABLE and outcome.assessment.stalled
    assert "cannot change on a running relay" in outcome.assessment.message
    assert store.objects[("StatefulSet", "apps", "mailrelay-relay")] == before
    stalled = next(c for c in store.relay["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == cond.QUEUE_STORAGE_IMMUTABLE
    store.edit(queue=PERSISTENT)  # put back: no longer stalled
    assert not run(store).assessment.stalled


def _pod(message: str, deleting: bool = True, state: str = "terminated") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "mailrelay-relay-0",
        "namespace": "apps",
        "uid": "0123456789ab",
        "labels": {"app.kubernetes.io/instance": "relay"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"containerStatuses": [{"name": "postfix", "state": {state: {"message": message}}}]},
    }


class EventLog(RelayStore):
    def __init__(self) -> None:
        super().__init__({"mailFromFQDN": "a.example"})
        self.events: list[tuple[str, str, str, str, str | None]] = []

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None:
        self.events.append((obj["kind"], kind, reason, message, name))


def test_drain_reports_become_events_only_for_deleted_pods_that_left_mail() -> None:
    lost = (
        "mailrelay-drain: 4 message(s) left in the queue (no hand-off target is set); they are lost with "
        "this pod's emptyDir"
    )
    kept = (
        "mailrelay-drain: 2 message(s) left in the queue (no other replica answers at mail.apps.svc:25); "
        "they stay on this pod's persistent volume and the next pod that mounts it delivers them"
    )
    api = EventLog()
    assert not drainreport.report(api, _pod(lost, deleting=False), "op")  # a container restart keeps the queue
    assert not drainreport.report(api, _pod("mailrelay-drain: queue empty, nothing left"), "op")
    assert not drainreport.report(api, _pod(lost, state="running"), "op")
    assert api.events == []
    assert drainreport.report(api, _pod(lost), "op") and drainreport.report(api, _pod(kept), "op")
    once = "mailrelay-relay-0.drain-01234567"  # the same name: the API server keeps only the first
    assert api.events == [
        ("MailRelay", "Warning", "QueueLeftBehind", f"pod mailrelay-relay-0: {lost}", once),
        ("MailRelay", "Normal", "QueueLeftBehind", f"pod mailrelay-relay-0: {kept}", once),
    ]
