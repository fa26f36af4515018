"""The informers and the caches a pass reads: passes read children from memory, write nothing when nothing
changed, learn what no cache can hold (a foreign object under a child's name), and a list after a watch
gap reports what vanished meanwhile, so no pass runs on a deleted relay."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api.names import CHILD_KINDS, CHILD_LABELS, KIND
from mailrelay.controller.caches import Caches
from mailrelay.controller.context import Context
from mailrelay.controller.settings import Settings
from mailrelay.kube.informer import Informer
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi

NS, NAME = "apps", "relay"


class WatchedApi(FakeApi):
    """FakeApi with list+watch: the test pushes watch events; the API's own reads are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []  # (verb, kind) of the GETs and LISTs that reached the API
        self.events_out: dict[str, queue.Queue[tuple[str, dict[str, Any]] | None]] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(("get", kind))
        return super().get(kind, namespace, name)

    def list_all(self, kind: str, namespace: str | None, labels: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        self.requests.append(("list", kind))
        # As the API server lists: items without apiVersion and kind.
        items = [
            {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
            for o in FakeApi.list(self, kind, namespace, labels)
        ]
        return items, "0"

    def watch(
        self, kind: str, namespace: str | None, labels: dict[str, str], resource_version: str, seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        events = self.events_out.setdefault(kind, queue.Queue())
        while (event := events.get()) is not None:
            if event[0] == "EXPIRED":
                return  # as a watch that ends: the informer watches again from where it was
            yield event

    def expire(self, kind: str) -> None:
        """The server forgot the watch's resourceVersion (410 Gone): the informer lists again."""
        self.events_out.setdefault(kind, queue.Queue()).put(("ERROR", {"metadata": {}}))

    def stop(self) -> None:
        for events in self.events_out.values():
            events.put(None)


@pytest.fixture
def api() -> Iterator[WatchedApi]:
    found = WatchedApi()
    yield found
    found.stop()


def eventually(check: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def started(api: WatchedApi) -> tuple[Context, Caches]:
    caches = Caches(api)
    context = Context(caches, Settings(), Leadership.unconditional("t"))
    caches.subscribe(context.relay_event, context.child_event, lambda event, pod: None)
    caches.start()
    eventually(caches.synced, "the caches never listed")
    return context, caches


def one_pass(api: WatchedApi, context: Context) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    writes, requests = len(api.writes), len(api.requests)
    context.process((NS, NAME), "test")
    return api.writes[writes:], api.requests[requests:]


def test_a_pass_over_an_unchanged_relay_makes_no_request(api: WatchedApi) -> None:
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, caches = started(api)
    try:
        writes, _ = one_pass(api, context)
        assert {kind for verb, kind, _ in writes if verb == "create"} == set(CHILD_KINDS)
        assert all(caches.by_kind[kind].get(NS, name) for _, kind, name in writes if kind != KIND)
        writes, requests = one_pass(api, context)
        assert writes == [] and requests == []  # not one GET or LIST: everything came from the caches
    finally:
        caches.stop()


def test_a_child_deleted_behind_the_operators_back_is_created_again(api: WatchedApi) -> None:
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, caches = started(api)
    try:
        one_pass(api, context)
        item = context.queue.get(timeout=0)  # the relay's own event, queued by the first list
        assert item is not None and item[0] == (NS, NAME)
        context.queue.done(item[0])
        service = FakeApi.get(api, "Service", NS, "mail")
        assert service is not None
        api.remove("Service", NS, "mail")
        api.events_out["Service"].put(("DELETED", service))
        eventually(lambda: caches.cached("Service", NS, "mail") is None, "the deletion never arrived")
        assert context.queue.get(timeout=5) == ((NS, NAME), "child")  # the child's event queued its relay
        writes, _ = one_pass(api, context)
        assert writes[0] == ("create", "Service", "mail")
    finally:
        caches.stop()


def test_a_foreign_object_under_a_childs_name_is_learnt_and_reported(api: WatchedApi) -> None:
    """Someone else's Service has none of our labels, so no cache holds it: the create is refused (409),
    and from then on each pass of that relay reads that one name, and reports the conflict."""
    api.relay(NS, NAME, mailFromFQDN="example.com")
    api.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mail", "namespace": NS}, "spec": {}})
    context, caches = started(api)
    try:
        one_pass(api, context)
        writes, requests = one_pass(api, context)
        assert requests == [("get", "Service")] and not [w for w in writes if w[1] == "Service"]
        status = (FakeApi.get(api, KIND, NS, NAME) or {}).get("status") or {}
        assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["ServiceConflict"]
        api.remove("Service", NS, "mail")  # the owner removes it: the next pass creates ours
        writes, _ = one_pass(api, context)
        assert ("create", "Service", "mail") in writes
    finally:
        caches.stop()


def test_an_older_watch_event_does_not_replace_what_the_operator_just_wrote(api: WatchedApi) -> None:
    informer = Informer(api, "ConfigMap", (), CHILD_LABELS)
    new: dict[str, Any] = {
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "namespace": NS,
            "resourceVersion": "7",
            "labels": CHILD_LABELS,
            "managedFields": [{"manager": "x"}],
        },
    }
    informer.observe(new)
    informer.observe({**new, "metadata": {**new["metadata"], "resourceVersion": "5"}, "data": {"old": "1"}})
    kept = informer.get(NS, "c")
    assert kept is not None and "data" not in kept and "managedFields" not in kept["metadata"]


def test_new_caches_over_existing_children_change_nothing(api: WatchedApi) -> None:
    """After a restart the children come from the list (items without apiVersion or kind): no write."""
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, caches = started(api)
    one_pass(api, context)
    caches.stop()
    api.stop()
    api.events_out.clear()
    context, caches = started(api)
    try:
        writes, requests = one_pass(api, context)
        assert writes == [] and requests == []
    finally:
        caches.stop()


def test_a_relay_deleted_while_the_watch_was_down_is_reported_gone_by_the_next_list(api: WatchedApi) -> None:
    """What kopf's watch cannot tell its handlers: after a "410 Gone" the informer lists again, and a relay
    missing from that list is reported DELETED, so its key gets no pass on a ghost."""
    api.relay(NS, "kept", mailFromFQDN="example.com")
    api.relay(NS, "gone", mailFromFQDN="example.com")
    heard: list[tuple[str, str]] = []
    informer = Informer(api, KIND, handlers=[lambda event, obj: heard.append((event, obj["metadata"]["name"]))])
    informer.start()
    try:
        eventually(informer.synced, "never listed")
        assert sorted(heard) == [("LISTED", "gone"), ("LISTED", "kept")]
        api.remove(KIND, NS, "gone")  # no DELETED event: the watch was down
        api.expire(KIND)
        eventually(lambda: ("DELETED", "gone") in heard, "the list after the gap did not report the deletion")
        assert [key[1] for key in informer.known()] == ["kept"]
    finally:
        informer.stop()
        api.events_out[KIND].put(None)


def test_relay_pods_are_kept_only_as_the_few_fields_the_operator_reads(api: WatchedApi) -> None:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p0",
            "namespace": NS,
            "labels": CHILD_LABELS,
            "resourceVersion": "1",
            "ownerReferences": [{"kind": "ReplicaSet", "uid": "rs", "controller": True}],
        },
        "spec": {"containers": [{"name": "postfix", "env": [{"name": "X", "value": "y" * 1000}]}]},
        "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True", "reason": "r"}]},
    }
    api.objects[("Pod", NS, "p0")] = pod
    _, caches = started(api)
    try:
        kept = caches.cached("Pod", NS, "p0")
        assert kept is not None and "spec" not in kept and kept["status"]["podIP"] == "10.0.0.7"
        assert kept["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    finally:
        caches.stop()
