"""Queue modes, disruption budget and spread as rendered and reconciled: what is created, switched,
refused and pruned, against the in-memory store of test_apply."""

from __future__ import annotations

import copy
from typing import Any

from one_pass import one_pass

from mailrelay.api import conditions as cond
from mailrelay.controller import drainreport
from mailrelay.controller.reconcile import Pass
from mailrelay.render.relay import CONTAINER, TERMINATION_GRACE_SECONDS, render_relay

from conftest import make_relay, relay_object
from fake_api import FakeApi
from test_render import by_kind

PERSISTENT = {"storage": {"size": "2Gi", "storageClassName": "fast-ssd"}}


class RelayStore(FakeApi):
    """The in-memory API with one relay in it; `run` is one pass over it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.put(relay_object(spec))

    @property
    def relay(self) -> dict[str, Any]:
        found = self.get("MailRelay", "apps", "relay")
        assert found is not None
        return found

    def edit(self, **spec: Any) -> None:
        relay = self.relay
        relay["spec"].update(spec)
        self.put(relay)

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


def run(store: RelayStore) -> Pass:
    return one_pass(store, store.relay)


def test_persistent_queue_is_a_stateful_set_with_a_claim_per_pod() -> None:
    relay = make_relay({"mailFromFQDN": "a.example", "replicas": 3, "queue": PERSISTENT})
    children = by_kind(render_relay(relay).objects)
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
    deployment = by_kind(render_relay(relay).objects)["Deployment"]
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
    assert ("delete", "PodDisruptionBudget") in {(w.action, w.kind) for w in outcome.plan.writes}
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
    store.put(foreign)
    kept = copy.deepcopy(store.objects[("PodDisruptionBudget", "apps", "mailrelay-relay")])
    run(store)
    assert store.objects[("PodDisruptionBudget", "apps", "mailrelay-relay")] == kept


def test_switching_to_a_persistent_queue_keeps_the_deployment_until_the_stateful_set_is_ready() -> None:
    store = RelayStore({"mailFromFQDN": "a.example", "replicas": 2})
    run(store)
    store.ready("Deployment")
    store.edit(queue=PERSISTENT)
    outcome = run(store)
    assert {"Deployment", "StatefulSet"} <= store.kinds()
    assert outcome.plan.assessment.reason == cond.SWITCHING_QUEUE and outcome.plan.assessment.reconciling
    assert "hand their queue" in outcome.plan.assessment.message
    store.ready("StatefulSet")
    run(store)
    assert "Deployment" not in store.kinds() and "StatefulSet" in store.kinds()
    assert run(store).plan.assessment.ready
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
    assert outcome.plan.assessment.reason == cond.QUEUE_STORAGE_IMMUTABLE and outcome.plan.assessment.stalled
    assert "cannot change on a running relay" in outcome.plan.assessment.message
    assert store.objects[("StatefulSet", "apps", "mailrelay-relay")] == before
    stalled = next(c for c in store.relay["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == cond.QUEUE_STORAGE_IMMUTABLE
    store.edit(queue=PERSISTENT)  # put back: no longer stalled
    assert not run(store).plan.assessment.stalled


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
        self.posted: list[tuple[str, str, str, str, str | None]] = []

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None:
        self.posted.append((obj["kind"], kind, reason, message, name))


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
    relay = api.relay
    assert not drainreport.report(api, _pod(lost, deleting=False), relay, "op")  # a container restart keeps it
    assert not drainreport.report(api, _pod("mailrelay-drain: queue empty, nothing left"), relay, "op")
    assert not drainreport.report(api, _pod(lost, state="running"), relay, "op")
    assert api.posted == []
    assert drainreport.report(api, _pod(lost), relay, "op") and drainreport.report(api, _pod(kept), relay, "op")
    once = "mailrelay-relay-0.drain-01234567"  # the same name: the API server keeps only the first
    assert api.posted == [
        (
            "MailRelay",
            "Warning",
            "QueueLeftBehind",
            "pod mailrelay-relay-0: 4 message(s) left in the queue when it "
            "stopped (no hand-off target is set); they could not be handed to another replica and are lost with the "
            "pod's emptyDir",
            once,
        ),
        (
            "MailRelay",
            "Normal",
            "QueueLeftBehind",
            "pod mailrelay-relay-0: 2 message(s) left in the queue when it "
            "stopped (no other replica answers at mail.apps.svc:25); they stay on its persistent volume and are "
            "delivered when a pod mounts it again",
            once,
        ),
    ]


def test_a_drain_report_is_said_in_the_operators_words_bounded_and_cleaned() -> None:
    """Whatever a pod writes into its termination message, the Event carries the count, at most a short
    reason with nothing unprintable in it, and the rest in the operator's words."""
    api = EventLog()
    drain = "mailrelay-drain: 7 message(s) left in the queue"
    assert drainreport.report(api, _pod(f"{drain} (\x1b[31mred; ignore this)"), api.relay, "op")
    assert drainreport.report(api, _pod(f"{drain} (a\nb; ignore that)"), api.relay, "op")
    assert drainreport.report(api, _pod(f"{drain} ({'x' * 500})"), api.relay, "op")
    messages = [message for _, kind, _, message, _ in api.posted if kind == "Warning"]
    assert len(messages) == 3 and all("7 message(s)" in m and len(m) < 400 for m in messages)
    assert "\x1b" not in messages[0] and "?[31mred" in messages[0]  # cleaned, not dropped
    assert "ignore that" not in messages[1] and "x" * 201 not in messages[2]
