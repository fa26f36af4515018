"""One reconcile pass at a time, through the operator's own Context, on an in-memory API and a fixed clock.

Each test drives a relay through a sequence of states and checks what each pass wrote: children,
status (conditions and their transition times) and Events, posted once per transition. The in-memory
API is the pass's cache too, so what a pass reads past the caches (`api.reads`) is counted.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mailrelay.api.names import CONFIG_HASH_ANNOTATION, KIND
from mailrelay.controller.context import Context
from mailrelay.controller.reconcile import Renders, run
from mailrelay.controller.settings import Settings
from mailrelay.controller.status import ready_condition
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi
from support.wait import present

NS, NAME = "apps", "relay"
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"
SMARTHOST = {"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def context(api: FakeApi, clock: Clock) -> Context:
    return Context(
        store=api,
        settings=Settings(postfix_image="registry.local/postfix:9"),
        leadership=Leadership.unconditional("test-replica"),
        clock=clock,
    )


def one_pass(api: FakeApi, context: Context) -> tuple[list[tuple[str, str, str]], list[str], dict[str, Any]]:
    """One pass over the live relay: (writes, event reasons, the relay's status after)."""
    writes, events = len(api.writes), len(api.events)
    context.process((NS, NAME), "test")
    relay = api.cached(KIND, NS, NAME)  # the test looks: not a request of the pass
    assert relay is not None
    return api.writes[writes:], [e["reason"] for e in api.events[events:]], relay.get("status") or {}


def secret(api: FakeApi, **data: str) -> None:
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "smarthost", "namespace": NS, "annotations": {"mailrelay.dev/relays": NAME}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def roll_out(api: FakeApi, ready: int = 1) -> None:
    deployment = api.cached("Deployment", NS, f"mailrelay-{NAME}")
    assert deployment is not None
    api.set_status(
        "Deployment",
        NS,
        f"mailrelay-{NAME}",
        {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    )


def test_missing_then_incomplete_secret_stalls_without_children_and_reports_once(
    api: FakeApi, context: Context, clock: Clock
) -> None:
    api.relay(NS, NAME, mailFromFQDN="apps.example.com", relay=SMARTHOST)
    writes, events, status = one_pass(api, context)
    assert writes == [("status", KIND, NAME)] and events == ["SecretNotFound"]
    ready = ready_condition(status)
    assert ready is not None and ready["reason"] == "SecretNotFound" and ready["lastTransitionTime"] == T0
    assert "Secret smarthost" in ready["message"]
    assert not [k for k in api.objects if k[0] in ("ConfigMap", "Deployment", "Service")]
    clock.now = T1
    assert one_pass(api, context)[:2] == ([], [])  # nothing changed: no write, no second Event
    secret(api, username="user-7c1d", password="  ")
    writes, events, status = one_pass(api, context)
    assert writes == [("status", KIND, NAME)] and events == ["SecretIncomplete"]
    assert present(ready_condition(status))["reason"] == "SecretIncomplete"
    assert present(ready_condition(status))["lastTransitionTime"] == T0  # still False: no transition
    assert "password" in present(ready_condition(status))["message"]
    assert all("user-7c1d" not in e["message"] for e in api.events)  # the Secret's content stays out


def test_complete_secret_creates_children_then_rollout_makes_ready_once(
    api: FakeApi, context: Context, clock: Clock
) -> None:
    api.relay(NS, NAME, mailFromFQDN="apps.example.com", relay=SMARTHOST)
    secret(api, username="relay", password="first")
    writes, events, status = one_pass(api, context)
    assert sorted(w[1] for w in writes if w[0] == "create") == ["ConfigMap", "Deployment", "NetworkPolicy", "Service"]
    assert events == ["Applied"]
    assert present(ready_condition(status))["reason"] == "RollingOut" and status["observedGeneration"] == 1
    deployment = api.cached("Deployment", NS, f"mailrelay-{NAME}")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/postfix:9"
    pod_hash = deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert status["configHash"] == pod_hash
    roll_out(api)
    clock.now = T1
    writes, events, status = one_pass(api, context)
    # A routine rollout: told by the Applied Event and the conditions, not by a second Event.
    assert writes == [("status", KIND, NAME)] and events == []
    ready = ready_condition(status)
    assert ready is not None and ready["status"] == "True" and ready["lastTransitionTime"] == T1
    clock.now = T2
    assert one_pass(api, context)[:2] == ([], [])  # settled: no write, no Event
    # Rotation: a new pod-template hash, so the pods roll; Ready stays until the controller reports.
    secret(api, username="relay", password="rotated")
    writes, events, status = one_pass(api, context)
    assert [w[1] for w in writes if w[0] == "apply"] == ["Deployment"] and events[0] == "Applied"
    rotated = api.get("Deployment", NS, f"mailrelay-{NAME}")
    assert present(rotated)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != pod_hash
    assert present(ready_condition(status))["reason"] == "RollingOut"
    assert present(ready_condition(status))["lastTransitionTime"] == T2


def test_losing_pods_is_a_transition_without_a_warning(api: FakeApi, context: Context, clock: Clock) -> None:
    api.relay(NS, NAME, mailFromFQDN="apps.example.com")
    one_pass(api, context)
    roll_out(api)
    clock.now = T1
    assert one_pass(api, context)[1] == []
    roll_out(api, ready=0)
    clock.now = T2
    writes, events, status = one_pass(api, context)
    assert writes == [("status", KIND, NAME)] and events == []  # not stalled: the Deployment recovers by itself
    ready = ready_condition(status)
    assert ready is not None and ready["status"] == "False" and ready["lastTransitionTime"] == T2
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
    }


def test_invalid_spec_keeps_the_children_and_reports_once(api: FakeApi, context: Context, clock: Clock) -> None:
    api.relay(NS, NAME, mailFromFQDN="apps.example.com")
    one_pass(api, context)
    children = {k: v["metadata"]["resourceVersion"] for k, v in api.objects.items() if k[0] != KIND}
    relay = api.cached(KIND, NS, NAME)  # the test looks: not a request of the pass
    present(relay)["spec"]["allowedNetworks"] = ["0.0.0.0/0"]
    api.put(present(relay))
    clock.now = T1
    writes, events, status = one_pass(api, context)
    assert writes == [("status", KIND, NAME)] and events == ["InvalidSpec"]
    assert status["observedGeneration"] == 2 and present(ready_condition(status))["reason"] == "InvalidSpec"
    assert {k: v["metadata"]["resourceVersion"] for k, v in api.objects.items() if k[0] != KIND} == children
    assert one_pass(api, context)[:2] == ([], [])


def test_a_stale_body_writes_no_status(api: FakeApi, context: Context) -> None:
    """A cached body older than the relay: the status patch carries its resourceVersion and is refused
    (409), and the pass asks to run again instead of writing what the old body would show."""
    old = api.relay(NS, NAME, mailFromFQDN="apps.example.com")
    api.relay(NS, NAME, mailFromFQDN="new.example.com")
    done = run(api, api, context.memory, Renders(), old, default_image="registry.local/postfix:9", instance="t")
    assert done.plan.status is not None and done.outcome.again and not done.outcome.status_written
    assert ("status", KIND, NAME) not in api.writes
    assert (api.get(KIND, NS, NAME) or {}).get("status") is None


def test_a_replica_that_does_not_lead_starts_no_pass(api: FakeApi) -> None:
    from mailrelay.kube.client import NotLeader

    api.relay(NS, NAME, mailFromFQDN="apps.example.com")
    follower = Context(store=api, settings=Settings(), leadership=Leadership("standby", 10.0))
    with pytest.raises(NotLeader):
        follower.process((NS, NAME), "test")
    assert api.writes == [] and api.events == []


def test_a_relay_gone_from_the_cache_gets_no_pass(api: FakeApi, context: Context) -> None:
    """A resync queues every cached relay; one deleted before its turn is a no-op, not a pass on a ghost."""
    api.relay(NS, "kept", mailFromFQDN="apps.example.com")
    api.relay(NS, "gone", mailFromFQDN="apps.example.com")
    context.resync()
    api.remove(KIND, NS, "gone")
    while (item := context.queue.get(timeout=0)) is not None:
        context.process(*item)
        context.queue.done(item[0])
    assert {name for _, _, name in api.writes} >= {"mailrelay-kept", "kept"}
    assert not [w for w in api.writes if "gone" in w[2]]


def test_a_settled_relay_costs_no_request(api: FakeApi, context: Context) -> None:
    api.relay(NS, NAME, mailFromFQDN="apps.example.com")
    one_pass(api, context)
    roll_out(api)
    one_pass(api, context)
    writes, reads = len(api.writes), len(api.reads)
    for _ in range(3):
        assert one_pass(api, context)[:2] == ([], [])
    assert len(api.writes) == writes and len(api.reads) == reads
