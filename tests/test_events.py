"""Events: events.k8s.io/v1 objects whose repeats fold into one series, posted best effort.

Against the emulated API server over HTTP (it stores events.k8s.io Events like any object; the
API server's own event validation is not emulated).
"""

from __future__ import annotations

from typing import Any

from mailrelay.kube import Api

from cluster import Cluster

RELAY = {"apiVersion": "mailrelay.dev/v1alpha1", "kind": "MailRelay",
         "metadata": {"name": "relay", "namespace": "events", "uid": "0f4c7a52-9a0e-4f0b-8d5e-0d6b1e2a3c4d"}}


def events(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.list("events", "events")


def test_a_repeated_event_is_one_object_with_a_series(cluster: Cluster, api: Api) -> None:
    for _ in range(3):
        api.post_event(RELAY, "Warning", "SecretNotFound", "Secret smarthost does not exist", "pod-a")
    [event] = events(cluster)
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["regarding"] == {"apiVersion": "mailrelay.dev/v1alpha1", "kind": "MailRelay", "name": "relay",
                                  "namespace": "events", "uid": RELAY["metadata"]["uid"]}
    assert (event["type"], event["reason"], event["note"]) == ("Warning", "SecretNotFound",
                                                               "Secret smarthost does not exist")
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


def test_posting_is_best_effort(cluster: Cluster, api: Api) -> None:
    cluster.fail("POST", "events", 403)  # e.g. RBAC without events.k8s.io
    api.post_event(RELAY, "Normal", "Applied", "created Service mail", "pod-a")  # no exception
    assert events(cluster) == []
    api.post_event(RELAY, "Normal", "Applied", "created Service mail", "pod-a")
    assert [e["reason"] for e in events(cluster)] == ["Applied"]
