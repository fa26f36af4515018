"""The child index: passes read children from memory, write nothing when nothing changed, and still
see what the index cannot hold (a foreign object under a child's name) or has not heard of yet."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api.names import CHILD_KINDS, CHILD_LABELS, KIND, MODE_CHILD_KINDS
from mailrelay.controller.context import Context
from mailrelay.controller.settings import Settings
from mailrelay.kube.informer import ChildIndex
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi

NS, NAME = "apps", "relay"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    api = FakeApi()
    yield api
    api.end_watches()


def started(api: FakeApi) -> tuple[Context, ChildIndex]:
    index = ChildIndex(api, CHILD_LABELS, (*CHILD_KINDS, *MODE_CHILD_KINDS))
    index.start()
    deadline = time.monotonic() + 5
    while not all(index.serves(kind, NS) for kind in index.kinds):
        assert time.monotonic() < deadline, "the index never listed"
        time.sleep(0.01)
    context = Context(
        api=api,
        settings=Settings(),
        leadership=Leadership.unconditional("t"),
        index=index,
    )
    return context, index


def one_pass(api: FakeApi, context: Context) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    relay = api.get(KIND, NS, NAME)
    assert relay is not None
    writes, reads = len(api.writes), len(api.reads)
    context.run_pass(relay, "test")
    return api.writes[writes:], api.reads[reads:]


def test_a_pass_over_an_unchanged_relay_reads_no_child_and_writes_nothing(api: FakeApi) -> None:
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, index = started(api)
    try:
        writes, _ = one_pass(api, context)
        assert {kind for _, kind, _ in writes} >= set(CHILD_KINDS)  # created, and each write went into the index
        assert len(index) == len(CHILD_KINDS)
        writes, reads = one_pass(api, context)
        assert writes == []
        assert [r for r in reads if r[1] != KIND] == []  # not one GET or LIST of a child
    finally:
        index.stop()


def test_a_child_deleted_behind_the_operators_back_is_created_again(api: FakeApi) -> None:
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, index = started(api)
    try:
        one_pass(api, context)
        service = api.get("Service", NS, "mail")
        assert service is not None
        api.remove("Service", NS, "mail")
        api.push("Service", "DELETED", service)
        deadline = time.monotonic() + 5
        while index.get("Service", NS, "mail") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        writes, _ = one_pass(api, context)
        assert writes[0] == ("apply", "Service", "mail")
    finally:
        index.stop()


def test_a_foreign_object_under_a_childs_name_is_still_a_conflict(api: FakeApi) -> None:
    """Someone else's Service has none of our labels, so the index cannot hold it: the pass asks the API."""
    api.relay(NS, NAME, mailFromFQDN="example.com")
    api.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mail", "namespace": NS}, "spec": {}})
    context, index = started(api)
    try:
        writes, reads = one_pass(api, context)
        assert ("get", "Service") in reads
        assert ("apply", "Service", "mail") not in writes
        status = (api.get(KIND, NS, NAME) or {}).get("status") or {}
        assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["ServiceConflict"]
    finally:
        index.stop()


def test_an_older_watch_event_does_not_replace_what_the_operator_just_wrote(api: FakeApi) -> None:
    index = ChildIndex(api, CHILD_LABELS, (*CHILD_KINDS, *MODE_CHILD_KINDS))
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
    index.observe(new)
    index.observe({**new, "metadata": {**new["metadata"], "resourceVersion": "5"}, "data": {"old": "1"}})
    kept = index.get("ConfigMap", NS, "c")
    assert kept is not None and "data" not in kept and "managedFields" not in kept["metadata"]


def test_a_new_index_over_existing_children_changes_nothing(api: FakeApi) -> None:
    """After a restart the children come from the list (items without apiVersion or kind): no write."""
    api.relay(NS, NAME, mailFromFQDN="example.com")
    context, index = started(api)
    one_pass(api, context)
    index.stop()
    context, index = started(api)
    try:
        writes, reads = one_pass(api, context)
        assert writes == []
        assert [r for r in reads if r[1] != KIND] == []
    finally:
        index.stop()


def test_a_passed_kind_is_handed_on_not_kept(api: FakeApi) -> None:
    """Relay pods (for the drain report): every listed and watched pod reaches the function, with its
    kind; none is kept, and none starts a pass."""
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": "p0", "namespace": NS, "labels": CHILD_LABELS, "resourceVersion": "1"},
    }
    api.stored(pod)
    seen: queue.Queue[dict[str, Any]] = queue.Queue()
    changed: list[dict[str, Any]] = []
    index = ChildIndex(
        api,
        CHILD_LABELS,
        ("ConfigMap",),
        on_change=changed.append,
        passed={"Pod": seen.put},
    )
    index.start()
    try:
        assert seen.get(timeout=5)["metadata"]["name"] == "p0"
        gone = {**pod, "metadata": {**pod["metadata"], "name": "p1", "deletionTimestamp": "t"}}
        api.push("Pod", "MODIFIED", gone)
        api.push("Pod", "DELETED", gone)
        got = [seen.get(timeout=5), seen.get(timeout=5)]
        assert [(o["kind"], o["metadata"]["name"]) for o in got] == [("Pod", "p1")] * 2
        assert index.get("Pod", NS, "p0") is None and index.get("Pod", NS, "p1") is None and len(index) == 0
        assert changed == []
    finally:
        index.stop()
