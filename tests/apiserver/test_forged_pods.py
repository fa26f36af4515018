"""Pods that only look like a relay's (issue 23, class 1), on the real control plane.

A tenant who may create pods copies a relay's labels onto a Ready pod whose address is a server that
answers one byte every two seconds, with a terminated container named like the relay's. The operator
picks pods by their controller (the relay's Deployment, through its ReplicaSet, by uid), so that pod
is never asked, never reported as drained, and a slow answer from a pod that is ours ends at the
scrape's overall deadline. The relay's own pods are the controller-manager's and kwok's; their kwok
addresses are recorded, never connected to (traffic stays on loopback).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mailrelay.api.names import GROUP
from mailrelay.controller import scrape
from mailrelay.controller.client import OperatorApi as Api

from controlplane import ControlPlane
from support.one_pass import one_pass, scrape_once
from support.samples import relay_object
from support.shipped_operator import operator_client
from support.wait import eventually

NAMESPACE = "forged-pods"
FORGED_ADDRESS = "127.0.0.77"
RESOURCES = {"Pod": "pods", "ReplicaSet": "replicasets", "Deployment": "deployments", "StatefulSet": "statefulsets"}


class Listing:
    """scrape's Reader over the real API server: every read a request (the operator's caches hold
    the same objects, from the same server)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def _base(self, kind: str, namespace: str | None) -> str:
        if kind == "MailRelay":
            group = f"/apis/{GROUP}/v1alpha1"
            return f"{group}/namespaces/{namespace}/mailrelays" if namespace else f"{group}/mailrelays"
        group = "/api/v1" if kind == "Pod" else "/apis/apps/v1"
        return f"{group}/namespaces/{namespace}/{RESOURCES[kind]}"

    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.plane.request("GET", f"{self._base(kind, namespace)}/{name}"))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def cached_list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        # This test's namespace only: other tests on the session's control plane leave relays (and kwok
        # pods) elsewhere, which a scrape round would ask as well.
        namespace = namespace or NAMESPACE
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        found = self.plane.request("GET", f"{self._base(kind, namespace)}?labelSelector={selector}")
        return [{"apiVersion": "v1", "kind": kind, **item} for item in found["items"]]

    read = cached


@pytest.fixture(scope="module")
def operator_api(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield operator_client(control_plane, tmp_path_factory.mktemp("sa"), NAMESPACE)
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.fixture
def trickle() -> Iterator[int]:
    """An HTTP server on FORGED_ADDRESS that answers one byte every 2 s, forever."""
    server = socket.create_server((FORGED_ADDRESS, 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"#" * 10_000:
                if stop.wait(2.0 if byte == ord("#") else 0):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def forged_pod(plane: ControlPlane, name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": "relay"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        # Never scheduled, so no kubelet or kwok rewrites the status the tenant writes.
        "spec": {"schedulingGates": [{"name": "forged"}], "containers": [{"name": "postfix", "image": "x"}]},
    }
    plane.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    status = {
        "phase": "Running",
        "podIP": FORGED_ADDRESS,
        "podIPs": [{"ip": FORGED_ADDRESS}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "postfix",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "see http://phish.example/"}},
            }
        ],
    }
    patch = json.dumps({"status": status})
    plane.kubectl("-n", NAMESPACE, "patch", "pod", name, "--subresource=status", "--type=merge", "-p", patch)
    return dict(plane.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"))


def test_a_pod_with_a_relays_labels_is_not_the_relay(
    control_plane: ControlPlane, operator_api: Api, trickle: int
) -> None:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{NAMESPACE}/mailrelays"
    control_plane.request(
        "POST", path, relay_object({"mailFromFQDN": "apps.example.com", "replicas": 2}, namespace=NAMESPACE, uid=None)
    )
    one_pass(operator_api, dict(control_plane.request("GET", f"{path}/relay")))
    reader = Listing(control_plane)
    relay = reader.cached("MailRelay", NAMESPACE, "relay")
    assert relay is not None
    genuine = eventually(
        lambda: (
            [p for p in reader.cached_list("Pod", NAMESPACE, {}) if scrape._ready(p)][1:]
            and [p for p in reader.cached_list("Pod", NAMESPACE, {}) if scrape._ready(p)]
        ),
        timeout=120,
        what="the Deployment's two pods Ready on kwok nodes",
    )
    forged = forged_pod(control_plane, "mailrelay-relay-6d4cf56db6-x7k2p")
    assert forged["status"]["podIP"] == FORGED_ADDRESS and not forged["metadata"].get("ownerReferences")

    picked = {p["metadata"]["name"] for p in scrape.relay_pods(reader, relay)}
    assert forged["metadata"]["name"] not in picked and len(picked) >= 2
    assert scrape.drained_pod_subject(reader, forged) is None  # no Event about it, whatever it says
    subject = scrape.drained_pod_subject(reader, genuine[0])  # the relay (its status may have moved on)
    assert subject is not None and subject["metadata"]["uid"] == relay["metadata"]["uid"]

    asked: list[str] = []

    def fetch(host: str, port: int, path: str) -> str:
        asked.append(host)
        raise OSError("a kwok address: recorded, not connected to")

    ours_before = {p["status"]["podIP"] for p in scrape.relay_pods(reader, relay) if scrape._ready(p)}
    scraper = scrape.Scraper(reader, operator_api, lambda key: None, port=trickle, fetch=fetch)
    with ThreadPoolExecutor(scrape.CONCURRENCY) as pool:
        scraper.round(pool)
    ours_after = {p["status"]["podIP"] for p in scrape.relay_pods(reader, relay) if scrape._ready(p)}
    assert FORGED_ADDRESS not in asked and len(asked) >= 2
    # Only pods the relay's workload controls (another test's operator may roll it meanwhile).
    assert set(asked) <= ours_before | ours_after, (asked, ours_before, ours_after)


def test_a_slow_answer_from_a_pod_of_ours_ends_at_the_deadline(trickle: int) -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        scrape.fetch(FORGED_ADDRESS, trickle, "/metrics", deadline=2.0)
    assert time.monotonic() - started < 10  # the server would trickle for 5.5 hours

    relay = relay_object({"mailFromFQDN": "apps.example.com"})
    started = time.monotonic()
    health = scrape_once(relay, [("mailrelay-relay-1", FORGED_ADDRESS, True)], port=trickle)
    assert time.monotonic() - started < 3 * scrape.DEADLINE + 5
    assert health is not None and health.status == "Unknown"
