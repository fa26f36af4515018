"""The controller as a state machine (hypothesis): any interleaving of relay edits, child deletions, foreign
objects under a child's name, resyncs, a lost and regained leadership and injected 409/429/500 answers
converges, once the faults stop, to the children and status a fresh operator would make, and a settled
state costs no write.

The in-memory API stands in for the API server and the caches together (it tells the Context of every
change as the informers would); the work queue runs on a fake clock so backoffs take no real time.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mailrelay.api.names import KIND
from mailrelay.controller.context import Context
from mailrelay.controller.queue import WorkQueue
from mailrelay.controller.settings import Settings
from mailrelay.kube.client import ApiError, NotLeader
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi

NS = "apps"
NAMES = ("a", "b")
CHILD_KINDS = ("NetworkPolicy", "ConfigMap", "Deployment", "Service")
# Each relay's Service has a name of its own ("mail-a", then maybe "smtp-a"): two relays claiming one
# name would make the winner depend on which pass came first, which no convergence check can fix.
SPECS = [
    {"mailFromFQDN": "apps.example.com"},
    {"mailFromFQDN": "apps.example.com", "replicas": 2},
    {"mailFromFQDN": "other.example.com", "networkPolicy": {"enabled": False}},
    {"mailFromFQDN": "apps.example.com", "service": {"name": "smtp"}},
    {"mailFromFQDN": "apps.example.com", "replicas": 2, "queue": {"storage": {"size": "1Gi"}}},
]


def service_name(name: str, spec: dict[str, Any]) -> str:
    return f"{(spec.get('service') or {}).get('name', 'mail')}-{name}"


WRITES = ("create", "apply", "patch", "delete", "status")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cluster(FakeApi):
    """The API server and the caches in one: faults by verb, and every change told to the Context."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, list[int]] = {}
        self.context: Context | None = None

    def fault(self, verb: str) -> None:
        pending = self.faults.get(verb)
        if pending:
            raise ApiError(pending.pop(0), f"{verb}: injected")

    def changed(self, obj: dict[str, Any]) -> None:
        if self.context is None:
            return
        if obj["kind"] == KIND:
            self.context.relay_event("MODIFIED", obj)
        else:
            self.context.child_event("MODIFIED", obj)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        stored = super().put(obj)
        self.changed(stored)
        return stored

    def remove(self, kind: str, namespace: str, name: str) -> None:
        gone = self.objects[(kind, namespace, name)]
        super().remove(kind, namespace, name)
        self.changed(gone)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.fault("create")
        return super().create(obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.fault("apply")
        return super().apply(obj)

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.fault("delete")
        live = self.objects.get((kind, namespace, name))
        super().delete(kind, namespace, name, uid)
        if live is not None:
            self.changed(live)

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        self.fault("status")
        written = super().patch_status(kind, namespace, name, status, resource_version)
        if written is not None:
            self.changed(written)
        return written

    def roll_out_all(self) -> None:
        """Play the workload controllers: every workload rolled out, all pods ready."""
        for (kind, _, _), obj in self.objects.items():
            if kind in ("Deployment", "StatefulSet"):
                n = obj["spec"].get("replicas", 1)
                status = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": n,
                    "availableReplicas": n,
                }
                if obj.get("status") != status:
                    obj["status"] = status
                    self.changed(obj)

    def state(self) -> dict[tuple[str, str, str], Any]:
        """What a user sees: each object's content, without versions, uids and times."""

        def clean(obj: dict[str, Any]) -> Any:
            found = copy.deepcopy(obj)
            meta = found["metadata"]
            for key in ("uid", "resourceVersion", "generation"):
                meta.pop(key, None)
            for ref in meta.get("ownerReferences") or []:
                ref.pop("uid", None)
            if found["kind"] != KIND:
                found.pop("status", None)  # the workload controllers' (here the test's), not the operator's
            for condition in (found.get("status") or {}).get("conditions") or []:
                condition.pop("lastTransitionTime", None)
            return found

        return {key: clean(obj) for key, obj in self.objects.items()}


def drain(cluster: Cluster, context: Context, clock: Clock, limit: int = 500) -> None:
    """Run the work queue dry, as the workers would, firing delayed keys by moving the clock on."""
    for _ in range(limit):
        item = context.queue.get(timeout=0)
        if item is None:
            if context.queue.idle():
                return
            clock.now += 301  # past every backoff
            continue
        key, why = item
        try:
            done = context.process(key, why)
            context.queue.forget(key)
            if done is not None and done.outcome.again:
                context.queue.add_after(key, 0.5, "again")
        except NotLeader:
            pass
        except ApiError:
            context.queue.add_rate_limited(key)
        finally:
            context.queue.done(key)
    raise AssertionError("the queue never ran dry")


def new_context(cluster: Cluster, clock: Clock, leading: bool = True) -> Context:
    leadership = Leadership.unconditional("op") if leading else Leadership("op", 10.0)
    context = Context(
        cluster, Settings(), leadership, clock=lambda: "2026-01-01T00:00:00Z", queue=WorkQueue(clock=clock)
    )
    cluster.context = context
    return context


def settle(cluster: Cluster, context: Context, clock: Clock) -> None:
    cluster.faults.clear()
    for _ in range(4):
        context.resync()
        drain(cluster, context, clock)
        cluster.roll_out_all()
        drain(cluster, context, clock)


class Controller(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = Clock()
        self.cluster = Cluster()
        self.context = new_context(self.cluster, self.clock)
        self.foreign: set[tuple[str, str]] = set()

    @rule(name=st.sampled_from(NAMES), spec=st.sampled_from(SPECS))
    def apply_relay(self, name: str, spec: dict[str, Any]) -> None:
        live = self.cluster.get(KIND, NS, name)
        relay = live or {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": KIND,
            "metadata": {"name": name, "namespace": NS},
        }
        relay["spec"] = {**copy.deepcopy(spec), "service": {"name": service_name(name, spec)}}
        self.cluster.put(relay)

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(CHILD_KINDS))
    def delete_child(self, name: str, kind: str) -> None:
        relay = self.cluster.get(KIND, NS, name)
        child = service_name(name, (relay or {}).get("spec", {})) if kind == "Service" else f"mailrelay-{name}"
        if (kind, NS, child) in self.cluster.objects:
            self.cluster.remove(kind, NS, child)
            self.foreign.discard((kind, child))  # whoever it was, it is gone

    @rule(kind=st.sampled_from(("ConfigMap", "Service")), name=st.sampled_from(NAMES))
    def foreign_object(self, kind: str, name: str) -> None:
        child = f"smtp-{name}" if kind == "Service" else f"mailrelay-{name}"
        if (kind, NS, child) not in self.cluster.objects:
            self.cluster.put({"apiVersion": "v1", "kind": kind, "metadata": {"name": child, "namespace": NS}})
            self.foreign.add((kind, child))

    @precondition(lambda self: bool(self.foreign))
    @rule(data=st.data())
    def foreign_object_removed(self, data: st.DataObject) -> None:
        kind, child = data.draw(st.sampled_from(sorted(self.foreign)))
        self.foreign.discard((kind, child))
        if (kind, NS, child) in self.cluster.objects:
            self.cluster.remove(kind, NS, child)

    @rule(verb=st.sampled_from(WRITES), status=st.sampled_from((409, 429, 500)), times=st.integers(1, 3))
    def fault(self, verb: str, status: int, times: int) -> None:
        self.cluster.faults.setdefault(verb, []).extend([status] * times)

    @rule()
    def resync(self) -> None:
        self.context.resync()

    @rule(steps=st.integers(1, 20))
    def work(self, steps: int) -> None:
        for _ in range(steps):
            item = self.context.queue.get(timeout=0)
            if item is None:
                self.clock.now += 2
                return
            key, why = item
            try:
                done = self.context.process(key, why)
                self.context.queue.forget(key)
                if done is not None and done.outcome.again:
                    self.context.queue.add_after(key, 0.5, "again")
            except NotLeader:
                pass
            except ApiError:
                self.context.queue.add_rate_limited(key)
            finally:
                self.context.queue.done(key)

    @rule()
    def roll_out(self) -> None:
        self.cluster.roll_out_all()

    @rule()
    def leadership_moves(self) -> None:
        """This replica loses the Lease (its queue dies with it); a new leader starts from the caches."""
        self.context.queue.shutdown()
        self.context = new_context(self.cluster, self.clock)
        self.context.resync()  # a new leader's informers list everything: every relay is queued

    @invariant()
    def never_writes_someone_elses_object(self) -> None:
        for kind, child in self.foreign:
            obj = self.cluster.objects.get((kind, NS, child))
            assert obj is None or not obj["metadata"].get("ownerReferences"), (kind, child)

    def teardown(self) -> None:
        if not hasattr(self, "cluster"):
            return
        settle(self.cluster, self.context, self.clock)
        writes = len(self.cluster.writes)
        self.context.resync()
        drain(self.cluster, self.context, self.clock)
        assert self.cluster.writes[writes:] == [], "a settled state still writes"
        # A fresh operator, on the same relays and the same foreign objects, makes the same world.
        fresh, clock = Cluster(), Clock()
        for (kind, namespace, name), obj in self.cluster.objects.items():
            if kind == KIND or (kind, name) in self.foreign:
                copied = copy.deepcopy(obj)
                copied.pop("status", None)
                fresh.objects[(kind, namespace, name)] = copied
        settle(fresh, new_context(fresh, clock), clock)
        assert fresh.state() == without_services_kept_for_a_conflict(self.cluster)


def without_services_kept_for_a_conflict(cluster: Cluster) -> dict[tuple[str, str, str], Any]:
    """What history may add, on purpose, while a relay is stalled by someone else's object under one of
    its names: its old Service when the new name is taken (mail keeps flowing), and its running workload
    when its ConfigMap's name is taken (running pods are not stopped for it). A fresh operator made neither."""
    state = cluster.state()
    for (kind, _, name), obj in cluster.objects.items():
        if kind != KIND:
            continue
        stalled = " ".join(c["message"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready")
        kept = set()
        if f"Service {obj['spec']['service']['name']} (owned by" in stalled:
            kept.add("Service")
        if f"ConfigMap mailrelay-{name} (owned by" in stalled:
            kept |= {"Deployment", "StatefulSet"}
        for key in [
            k
            for k, o in state.items()
            if k[0] in kept
            and any(r["name"] == name for r in o["metadata"].get("ownerReferences") or [])
            and (k[0] != "Service" or k[2] != obj["spec"]["service"]["name"])
        ]:
            del state[key]
    return state
