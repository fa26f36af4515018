"""Events: events.k8s.io/v1 objects whose repeats fold into one series, posted best effort.

The series on the real control plane, posted with the shipped ServiceAccount's token and RBAC, so the
API server's event validation (series on update, eventTime, reporting fields) and the grants both
apply. Only the refused post (a 403 the operator's own grants never produce) uses the emulated API
server, which can inject it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.kube.client import Api

from controlplane import ControlPlane
from support.emulator import Cluster
from support.shipped_operator import operator_client

RELAY: dict[str, Any] = {
    "apiVersion": "mailrelay.dev/v1alpha1",
    "kind": "MailRelay",
    "metadata": {"name": "relay", "namespace": "events", "uid": "0f4c7a52-9a0e-4f0b-8d5e-0d6b1e2a3c4d"},
}


class RealEvents:
    """The few calls the series test makes, on the real API server as its admin."""

    def __init__(self, plane: ControlPlane):
        self.plane = plane

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        listing = self.plane.request("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        return [{"apiVersion": listing["apiVersion"], "kind": "Event", **item} for item in listing["items"]]

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.plane.request("DELETE", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}")


@pytest.fixture(scope="module")
def operator_api(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield operator_client(control_plane, tmp_path_factory.mktemp("sa"), "events")
    control_plane.kubectl("delete", "namespace", "events", "--wait=false")


def events(cluster: Cluster | RealEvents) -> list[dict[str, Any]]:
    return cluster.list("events", "events")


def test_a_repeated_event_is_one_object_with_a_series(
    control_plane: ControlPlane, operator_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, api = RealEvents(control_plane), operator_api
    for _ in range(3):
        api.post_event(RELAY, "Warning", "SecretNotFound", "Secret smarthost does not exist", "pod-a")
    assert not [r for r in caplog.records if "could not post event" in r.getMessage()]
    [event] = events(cluster)
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["regarding"] == {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "name": "relay",
        "namespace": "events",
        "uid": RELAY["metadata"]["uid"],
    }
    assert (event["type"], event["reason"], event["note"]) == (
        "Warning",
        "SecretNotFound",
        "Secret smarthost does not exist",
    )
    assert event["reportingController"] == "mailrelay-operator" and event["reportingInstance"] == "pod-a"
    assert event["series"]["count"] == 3 and event["series"]["lastObservedTime"] >= event["eventTime"]

    # Another message is another event; the first one's series is untouched.
    api.post_event(RELAY, "Normal", "Ready", "1 of 1 pods ready", "pod-a")
    assert len(events(cluster)) == 2
    assert next(e for e in events(cluster) if e["reason"] == "SecretNotFound")["series"]["count"] == 3

    # An expired (deleted) event starts over as a new object.
    cluster.delete("events", "events", event["metadata"]["name"])
    api.post_event(RELAY, "Warning", "SecretNotFound", "Secret smarthost does not exist", "pod-a")
    [again] = [e for e in events(cluster) if e["reason"] == "SecretNotFound"]
    assert again["metadata"]["name"] != event["metadata"]["name"] and "series" not in again
    for event in events(cluster):
        cluster.delete("events", "events", event["metadata"]["name"])


def test_posting_is_best_effort(emulator: Cluster, api: Api) -> None:
    """Emulated: a refused post (e.g. RBAC without events.k8s.io) must not fail the pass."""
    emulator.fail("POST", "events", 403)  # e.g. RBAC without events.k8s.io
    api.post_event(RELAY, "Normal", "Applied", "created Service mail", "pod-a")  # no exception
    assert events(emulator) == []
    api.post_event(RELAY, "Normal", "Applied", "created Service mail", "pod-a")
    assert [e["reason"] for e in events(emulator)] == ["Applied"]
