"""Queue modes, disruption budget and spread as rendered and reconciled: what is created, switched,
refused and pruned, against the in-memory API (support/fake_api.py)."""

from __future__ import annotations

import copy
from typing import Any

from mailrelay.api import conditions as cond
from mailrelay.api.names import KIND
from mailrelay.controller import drainreport
from mailrelay.controller.reconcile import Pass
from mailrelay.render.relay import CONTAINER, TERMINATION_GRACE_SECONDS, render_relay

from support.fake_api import FakeApi
from support.one_pass import one_pass
from support.samples import by_kind, make_relay, relay_object

PERSISTENT = {"storage": {"size": "2Gi", "storageClassName": "fast-ssd"}}


def relay_api(spec: dict[str, Any]) -> FakeApi:
    """An API holding the relay, which reconcile reads and whose status it writes."""
    api = FakeApi()
    api.put(relay_object(spec))
    return api


def relay(api: FakeApi) -> dict[str, Any]:
    found = api.get(KIND, "apps", "relay")
    assert found is not None
    return found


def edit(api: FakeApi, **spec: Any) -> None:
    api.edit(KIND, "apps", "relay", **spec)


def children(api: FakeApi) -> set[str]:
    return api.kinds("apps") - {KIND}


def run(api: FakeApi) -> Pass:
    return one_pass(api, relay(api))


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
    store = relay_api({"mailFromFQDN": "a.example", "replicas": 2})
    run(store)
    assert ("PodDisruptionBudget", "apps", "mailrelay-relay") in store.objects
    edit(store, replicas=1)
    outcome = run(store)
    assert ("PodDisruptionBudget", "apps", "mailrelay-relay") not in store.objects
    assert ("delete", "PodDisruptionBudget") in {(w.action, w.kind) for w in outcome.plan.writes}
    store.writes.clear()
    run(store)
    assert not [w for w in store.writes if w[0] == "delete"]


def test_a_budget_that_is_not_ours_is_left_alone() -> None:
    store = relay_api({"mailFromFQDN": "a.example", "replicas": 1})
    foreign = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "mailrelay-relay", "namespace": "apps", "uid": "someone-else"},
    }
    store.stored(foreign)
    kept = copy.deepcopy(foreign)
    run(store)
    assert store.objects[("PodDisruptionBudget", "apps", "mailrelay-relay")] == kept


def test_switching_to_a_persistent_queue_keeps_the_deployment_until_the_stateful_set_is_ready() -> None:
    store = relay_api({"mailFromFQDN": "a.example", "replicas": 2})
    run(store)
    store.roll_out("Deployment", "apps", "mailrelay-relay")
    edit(store, queue=PERSISTENT)
    outcome = run(store)
    assert {"Deployment", "StatefulSet"} <= children(store)
    assert outcome.plan.assessment.reason == cond.SWITCHING_QUEUE and outcome.plan.assessment.reconciling
    assert "hand their queue" in outcome.plan.assessment.message
    store.roll_out("StatefulSet", "apps", "mailrelay-relay")
    run(store)
    assert "Deployment" not in children(store) and "StatefulSet" in children(store)
    assert run(store).plan.assessment.ready
    # And back: the StatefulSet's pods hand their queue to the Deployment's once those are ready.
    edit(store, queue={})
    run(store)
    assert {"Deployment", "StatefulSet"} <= children(store)
    store.roll_out("Deployment", "apps", "mailrelay-relay")
    run(store)
    assert "StatefulSet" not in children(store)


def test_changing_the_claim_of_a_running_relay_is_refused_with_a_clear_condition() -> None:
    store = relay_api({"mailFromFQDN": "a.example", "queue": PERSISTENT})
    run(store)
    before = copy.deepcopy(store.objects[("StatefulSet", "apps", "mailrelay-relay")])
    edit(store, queue={"storage": {"size": "5Gi", "storageClassName": "fast-ssd"}})
    outcome = run(store)
    assert outcome.plan.assessment.reason == cond.QUEUE_STORAGE_IMMUTABLE and outcome.plan.assessment.stalled
    assert "cannot change on a running relay" in outcome.plan.assessment.message
    assert store.objects[("StatefulSet", "apps", "mailrelay-relay")] == before
    stalled = next(c for c in relay(store)["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == cond.QUEUE_STORAGE_IMMUTABLE
    edit(store, queue=PERSISTENT)  # put back: no longer stalled
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


def test_drain_reports_become_events_only_for_deleted_pods_that_left_mail() -> None:
    lost = (
        "mailrelay-drain: 4 message(s) left in the queue (no hand-off target is set); they are lost with "
        "this pod's emptyDir"
    )
    kept = (
        "mailrelay-drain: 2 message(s) left in the queue (no other replica answers at mail.apps.svc:25); "
        "they stay on this pod's persistent volume and the next pod that mounts it delivers them"
    )
    api = relay_api({"mailFromFQDN": "a.example"})
    subject = relay(api)  # the relay whose workload controls the pod (the caller checks that)
    assert not drainreport.report(api, _pod(lost, deleting=False), subject, "op")  # a restart keeps the queue
    assert not drainreport.report(api, _pod("mailrelay-drain: queue empty, nothing left"), subject, "op")
    assert not drainreport.report(api, _pod(lost, state="running"), subject, "op")
    assert api.events == []
    assert drainreport.report(api, _pod(lost), subject, "op") and drainreport.report(api, _pod(kept), subject, "op")
    once = "mailrelay-relay-0.drain-01234567"  # the same name: the API server keeps only the first
    assert [(e["regarding"], e["type"], e["reason"], e["message"], e["name"]) for e in api.events] == [
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
    api = relay_api({"mailFromFQDN": "a.example"})
    drain = "mailrelay-drain: 7 message(s) left in the queue"
    for words in (f"{drain} (\x1b[31mred; ignore this)", f"{drain} (a\nb; ignore that)", f"{drain} ({'x' * 500})"):
        assert drainreport.report(api, _pod(words), relay(api), "op")
    messages = [e["message"] for e in api.events if e["type"] == "Warning"]
    assert len(messages) == 3 and all("7 message(s)" in m and len(m) < 400 for m in messages)
    assert "\x1b" not in messages[0] and "?[31mred" in messages[0]  # cleaned, not dropped
    assert "ignore that" not in messages[1] and "x" * 201 not in messages[2]
