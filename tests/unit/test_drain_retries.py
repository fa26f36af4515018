"""A drain report is not lost to watch order or to one failed Event post: the operator looks at the pod
again until the caches hold its ReplicaSet and Deployment (each kind has its own watch, and a pod may come
first), and never reports a look-alike however often it looks."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailrelay.controller import context as context_module
from mailrelay.controller import scrape
from mailrelay.controller.context import Context, report_drain
from mailrelay.controller.settings import Settings
from mailrelay.kube.client import ApiError
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi
from support.wait import eventually

NS = "apps"
LEFT = "mailrelay-drain: 3 message(s) left in the queue (no other replica took them); lost with the emptyDir"


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context_module, "DRAIN_RETRIES", (0.05, 0.05, 0.05))


def _owned(kind: str, name: str, uid: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    refs = []
    if owner is not None:
        meta = owner["metadata"]
        refs = [{"kind": owner["kind"], "name": meta["name"], "uid": meta["uid"], "controller": True}]
    return {
        "apiVersion": "apps/v1" if kind != "Pod" else "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": uid, "ownerReferences": refs},
    }


def _family(api: FakeApi) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The relay, its Deployment and a ReplicaSet of it, as the API holds them (not yet in the caches)."""
    relay = api.relay(NS, "relay", mailFromFQDN="apps.example.com")
    deployment = _owned("Deployment", "mailrelay-relay", "d-1", relay)
    replicas = _owned("ReplicaSet", "mailrelay-relay-5d8f", "rs-1", deployment)
    return relay, deployment, replicas


def _drained(uid: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    pod = _owned("Pod", f"mailrelay-relay-{uid}", uid, owner)
    pod["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", labels={"app.kubernetes.io/instance": "relay"})
    terminated = {"terminated": {"message": LEFT}}
    pod["status"] = {"containerStatuses": [{"name": "postfix", "state": terminated}]}
    return pod


def _report(context: Context, api: FakeApi, pod: dict[str, Any]) -> None:
    report_drain(context, pod, lambda p: scrape.drained_pod_subject(api, p), lambda p: scrape.drain_owner_known(api, p))


def _context(api: FakeApi) -> Context:
    return Context(api, Settings(), Leadership.unconditional("op"))


def test_a_pod_seen_before_its_replicaset_is_reported_once_the_caches_hold_it() -> None:
    api = FakeApi()
    _, deployment, replicas = _family(api)
    pod = api.put(_drained("p-1", replicas))
    _report(_context(api), api, pod)
    assert api.events == []  # the owner is not cached yet: no report, and no verdict either
    api.put(deployment)
    api.put(replicas)
    [event] = eventually(lambda: api.events, timeout=5, what="the drain report")
    assert (event["regarding"], event["object"], event["reason"]) == ("MailRelay", "relay", "QueueLeftBehind")
    time.sleep(0.3)
    assert len(api.events) == 1  # one look waits per pod: no second report


def test_a_look_alike_is_never_reported_however_often_it_is_looked_at() -> None:
    api = FakeApi()
    _, deployment, replicas = _family(api)
    api.put(deployment)
    api.put(replicas)
    stranger = _owned("ReplicaSet", "other-rs", "rs-9", None)  # a tenant's own ReplicaSet, in the caches
    api.put(stranger)
    context = _context(api)
    _report(context, api, api.put(_drained("p-2", stranger)))
    unowned = api.put(_drained("p-3", None))  # controlled by nothing
    _report(context, api, unowned)
    missing = _drained("p-4", _owned("ReplicaSet", "gone", "rs-404", None))  # an owner that never appears
    _report(context, api, api.put(missing))
    time.sleep(0.5)  # past every look (3 x 0.05 s)
    assert api.events == []
    assert context._drains == set()


def test_an_event_the_api_refused_is_posted_on_a_later_look(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    _, deployment, replicas = _family(api)
    for obj in (deployment, replicas):
        api.put(obj)
    post = api.post_event
    failures = iter([ApiError(503, "unavailable")])

    def flaky(*args: Any, **kwargs: Any) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        post(*args, **kwargs)

    monkeypatch.setattr(api, "post_event", flaky)
    _report(_context(api), api, api.put(_drained("p-5", replicas)))
    [event] = eventually(lambda: api.events, timeout=5, what="the drain report after one failed post")
    assert event["object"] == "relay"
