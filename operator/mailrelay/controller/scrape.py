"""How delivery goes, asked of each relay's own pods on a loop of its own; a pass reads the last answer.

Only pods the relay's own workload controls are asked: the pod's controller is the relay's
StatefulSet, or a ReplicaSet whose controller is the relay's Deployment (all by uid, all from the
caches). Labels alone prove nothing: anyone who may create pods in the namespace can copy them.
Every scrape has an overall deadline (a pod that answers one byte at a time is dropped when it runs
out, not when a read times out), a bounded number run at once, and a relay's scrapes never hold up
another relay's nor any reconcile pass: the loop keeps each relay's latest Health, and queues a pass
for the relays whose Health changed. What a pod says is parsed totally and cleaned (delivery).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from mailrelay.api.names import KIND
from mailrelay.controller import delivery, metrics
from mailrelay.controller.observe import Key, Reader
from mailrelay.kube.client import Api, ApiError
from mailrelay.render import sidecar
from mailrelay.render.relay import CONTAINER

log = logging.getLogger(__name__)
LOG_LINES = 200
LOG_BYTES = 256 * 1024
METRICS_BYTES = 4 * 1024 * 1024
DEADLINE = 5.0  # seconds for one pod's whole answer
CONCURRENCY = 8


def fetch(host: str, port: int, path: str, deadline: float = DEADLINE) -> str:
    """GET http://host:port/path, all of it within `deadline` seconds; OSError when it is not."""
    until = time.monotonic() + deadline
    connection = http.client.HTTPConnection(host, port, timeout=deadline)
    try:
        connection.request("GET", path, headers={"Accept": "text/plain"})
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        chunks: list[bytes] = []
        size = 0
        while size <= METRICS_BYTES:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole answer within {deadline:g}s")
            if connection.sock is not None:
                connection.sock.settimeout(left)
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks).decode("utf-8", "replace")
            chunks.append(chunk)
            size += len(chunk)
        raise OSError("the answer is larger than any exporter's")
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from None
    finally:
        connection.close()


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (
        bool(status.get("podIP"))
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    )


def _controller(obj: dict[str, Any] | None) -> dict[str, Any]:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), {})


def _controllers(caches: Reader, namespace: str, relay_uid: str | None) -> set[str]:
    """The uids of the relay's workloads and of the ReplicaSets its Deployment controls."""
    workloads = {
        o["metadata"]["uid"]
        for kind in ("Deployment", "StatefulSet")
        for o in caches.cached_list(kind, namespace, {})
        if _controller(o).get("uid") == relay_uid
    }
    sets = {
        o["metadata"]["uid"]
        for o in caches.cached_list("ReplicaSet", namespace, {})
        if _controller(o).get("uid") in workloads
    }
    return workloads | sets


def relay_pods(caches: Reader, relay: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods the relay's own Deployment (through its ReplicaSets) or StatefulSet controls."""
    meta = relay["metadata"]
    ours = _controllers(caches, meta["namespace"], meta.get("uid"))
    selector = {"app.kubernetes.io/instance": meta["name"]}
    return [p for p in caches.cached_list("Pod", meta["namespace"], selector) if _controller(p).get("uid") in ours]


def drained_pod_subject(caches: Reader, pod: dict[str, Any]) -> dict[str, Any] | None:
    """What a drain report of `pod` is about: the relay its labels name, only if the relay's own workload
    controls the pod; the pod itself when no such relay exists any more (a deleted relay's pods drain
    after it); None for a look-alike of a relay that exists."""
    meta = pod["metadata"]
    relay = caches.cached(KIND, meta["namespace"], (meta.get("labels") or {}).get("app.kubernetes.io/instance", ""))
    if relay is None or relay["metadata"].get("deletionTimestamp"):
        return {"apiVersion": "v1", "kind": "Pod", **pod}
    if _controller(pod).get("uid") in _controllers(caches, meta["namespace"], relay["metadata"].get("uid")):
        return relay
    return None


def drain_owner_known(caches: Reader, pod: dict[str, Any]) -> bool:
    """Whether the caches hold the pod's controller (and a ReplicaSet's Deployment), so that
    drained_pod_subject can tell a relay's pod from a look-alike: each kind has its own watch, and one
    may deliver a pod before another delivers the ReplicaSet that made it."""
    ref = _controller(pod)
    kind, uid, namespace = ref.get("kind"), ref.get("uid"), pod["metadata"]["namespace"]
    if kind not in ("ReplicaSet", "StatefulSet") or not uid:
        return True  # controlled by nothing a relay makes: nothing to wait for
    owner = next((o for o in caches.cached_list(kind, namespace, {}) if o["metadata"].get("uid") == uid), None)
    if owner is None:
        return False
    parent = _controller(owner)
    return (
        kind == "StatefulSet"
        or parent.get("kind") != "Deployment"
        or any(o["metadata"].get("uid") == parent.get("uid") for o in caches.cached_list("Deployment", namespace, {}))
    )


@dataclass
class Scraper:
    caches: Reader  # the informers (or the tests' in-memory API)
    api: Api  # for the relay containers' logs
    on_change: Callable[[Key], None]
    interval: float = 60.0
    port: int = sidecar.PORT
    fetch: Callable[[str, int, str], str] = fetch
    read_log: Callable[[str, str], str] | None = None  # (namespace, pod) → the relay container's log tail
    # More to ask than the relays: (key, an object whose namespace, name and uid own the pods' workload),
    # a ClusterSmarthost's egress tier (controller.context.egress_subjects).
    extra: Callable[[], list[tuple[Key, dict[str, Any]]]] = lambda: []
    results: dict[Key, delivery.Health] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def health(self, key: Key) -> delivery.Health | None:
        with self._lock:
            return self.results.get(key)

    def forget(self, key: Key) -> None:
        with self._lock:
            self.results.pop(key, None)

    def _log(self, namespace: str, pod: str) -> str:
        if self.read_log is not None:
            return self.read_log(namespace, pod)
        api = self.api
        return api.text(
            f"log of pod {namespace}/{pod}",
            api.path("Pod", namespace, pod, "log"),
            [("container", CONTAINER), ("tailLines", str(LOG_LINES)), ("limitBytes", str(LOG_BYTES))],
            timeout=DEADLINE,
        )

    def _ask(self, pod: dict[str, Any]) -> tuple[delivery.Sample | None, list[str]]:
        meta = pod["metadata"]
        address = pod["status"]["podIP"]
        try:
            sample = delivery.parse(self.fetch(address, self.port, sidecar.PATH))
        except OSError as exc:
            log.info("metrics of relay pod %s/%s unreadable: %s", meta["namespace"], meta["name"], exc)
            sample = None
        if sample is None:
            metrics.PROBE_FAILURES.inc()
            return None, []
        reasons: list[str] = []
        if sample.queues.get("deferred"):
            try:
                reasons = delivery.deferral_reasons(self._log(meta["namespace"], meta["name"]))
            except ApiError as exc:
                log.info("log of relay pod %s/%s unreadable: %s", meta["namespace"], meta["name"], exc)
        return sample, reasons

    def round(self, pool: ThreadPoolExecutor) -> int:
        """Ask every relay's pods once; returns how many relays' Health changed (each gets a pass)."""
        asked = {}
        subjects = [
            ((r["metadata"]["namespace"], r["metadata"]["name"]), r) for r in self.caches.cached_list(KIND, None, {})
        ]
        for key, relay in [*subjects, *self.extra()]:
            if relay["metadata"].get("deletionTimestamp"):
                continue
            pods = [p for p in relay_pods(self.caches, relay) if _ready(p)]
            asked[key] = [pool.submit(self._ask, pod) for pod in pods]
        futures = [f for found in asked.values() for f in found]
        wait(futures, timeout=DEADLINE * 2 + 1)  # each fetch ends by its own deadline; this is a backstop
        changed = 0
        for key, found in asked.items():
            answers = [f.result() for f in found if f.done() and not f.exception()]
            samples = [s for s, _ in answers if s is not None]
            reasons = [r for _, rs in answers for r in rs]
            health = delivery.assess(samples, pods=len(found), reasons=reasons)
            with self._lock:
                before, self.results[key] = self.results.get(key), health
            if before != health:
                changed += 1
                self.on_change(key)
        with self._lock:
            for gone in set(self.results) - set(asked):
                del self.results[gone]
        return changed

    def run(self) -> None:
        """Rounds every `interval` until stopped; runs in a thread of its own."""
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="scrape") as pool:
            while not self._stop.wait(self.interval):
                try:
                    self.round(pool)
                except Exception:  # the loop must outlive any one bad round
                    log.exception("delivery scrape failed")

    def stop(self) -> None:
        self._stop.set()
