"""Ask a relay's pods how delivery goes: their metrics sidecars over HTTP, and Postfix's log when mail waits.

Runs on the operator's resync only, so a relay costs one GET per ready pod a minute, plus a bounded
log read (the last LOG_LINES lines) while deferred mail sits in its queue. Needs `list` on pods and
`get` on pods/log in the relay's namespace, and the pods' metrics port reachable from the operator.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes

from mailrelay.api.spec import MailRelay
from mailrelay.controller import delivery, metrics
from mailrelay.kube.client import Api
from mailrelay.kube.resources import label_selector
from mailrelay.render import sidecar
from mailrelay.render.relay import CONTAINER, selector_labels

log = logging.getLogger(__name__)
LOG_LINES = 200
LOG_BYTES = 256 * 1024
TIMEOUT = 3.0


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return str(response.read(4 * 1024 * 1024).decode())


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return (
        bool(pod.get("status", {}).get("podIP"))
        and not pod.get("metadata", {}).get("deletionTimestamp")
        and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    )


@dataclass
class RelayProbe:
    """`probe(relay)` → delivery.Health; the pod listing, log read and scrape can be replaced in tests."""

    api: Api
    port: int = sidecar.PORT
    fetch: Callable[[str], str] = scrape
    pods: Callable[[str, str], list[dict[str, Any]]] | None = None  # (namespace, selector) → pods
    read_log: Callable[[str, str], str] | None = None  # (namespace, pod) → the relay container's log tail
    _core: Any = field(default=None, repr=False)

    def _core_api(self) -> Any:
        if self._core is None:
            self._core = kubernetes.client.CoreV1Api(self.api.client)
        return self._core

    def _list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        if self.pods is not None:
            return self.pods(namespace, selector)
        listing = self._core_api().list_namespaced_pod(namespace, label_selector=selector, _request_timeout=TIMEOUT)
        return list(self.api.client.sanitize_for_serialization(listing).get("items") or [])

    def _log(self, namespace: str, pod: str) -> str:
        if self.read_log is not None:
            return self.read_log(namespace, pod)
        return str(
            self._core_api().read_namespaced_pod_log(
                pod,
                namespace,
                container=CONTAINER,
                tail_lines=LOG_LINES,
                limit_bytes=LOG_BYTES,
                _request_timeout=TIMEOUT,
            )
        )

    def __call__(self, relay: MailRelay) -> delivery.Health | None:
        """The relay's delivery health, or None (keep the last one) when its pods cannot be listed."""
        try:
            listed = self._list_pods(relay.namespace, label_selector(selector_labels(relay)))
        except (kubernetes.client.ApiException, OSError) as exc:
            metrics.PROBE_FAILURES.inc()
            log.warning("pods of relay %s/%s not listed: %s", relay.namespace, relay.name, exc)
            return None
        pods = [p for p in listed if _ready(p)]
        samples: list[delivery.Sample] = []
        reasons: list[str] = []
        for pod in pods:
            name, address = pod["metadata"]["name"], pod["status"]["podIP"]
            host = f"[{address}]" if ":" in address else address
            try:
                sample = delivery.parse(self.fetch(f"http://{host}:{self.port}{sidecar.PATH}"))
            except (OSError, ValueError) as exc:
                metrics.PROBE_FAILURES.inc()
                log.info("metrics of relay pod %s/%s unreadable: %s", relay.namespace, name, exc)
                continue
            samples.append(sample)
            if sample.queues.get("deferred"):
                try:
                    reasons += delivery.deferral_reasons(self._log(relay.namespace, name))
                except (kubernetes.client.ApiException, OSError) as exc:
                    log.info("log of relay pod %s/%s unreadable: %s", relay.namespace, name, exc)
        return delivery.assess(samples, pods=len(pods), reasons=reasons)
