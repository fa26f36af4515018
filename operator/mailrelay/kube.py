"""The few Kubernetes API calls the operator makes, as plain JSON, with retries for transient faults.

The official client's ApiClient is used for transport and auth only (raw JSON in and out): the
operator compares live objects with rendered dicts, and typed models would only get in the way.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from mailrelay.render import FIELD_MANAGER, label_selector
from mailrelay.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")

# Kind → (API prefix, plural) for everything the operator reads or writes.
RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/apis/events.k8s.io/v1", "events"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "MailRelay": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}
TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}
EVENT_SERIES_KEPT = 1024  # repeats of this many distinct events are folded into their first object
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


class ApiError(Exception):
    """An API call that failed for good (or ran out of retries); `status` is the HTTP code, 0 if none."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the current kubeconfig context."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = RESOURCES[kind]
    result = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        result += f"/{name}"
    if subresource:
        result += f"/{subresource}"
    return result


def _with_retries(what: str, call: Callable[[], T]) -> T:
    """Retry conflicts, throttling, server errors and dropped connections with jittered backoff."""
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        try:
            return call()
        except ApiException as exc:
            if exc.status not in TRANSIENT_STATUS or delay is None:
                raise ApiError(exc.status or 0, f"{what}: HTTP {exc.status} {_reason(exc)}") from None
            log.info("%s: HTTP %s, retry %d in %.1fs", what, exc.status, attempt + 1, delay)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if delay is None:
                raise ApiError(0, f"{what}: {exc}") from None
            log.info("%s: %s, retry %d in %.1fs", what, type(exc).__name__, attempt + 1, delay)
        time.sleep(delay * (1 + random.random() / 2))
    raise AssertionError("unreachable")


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


@dataclass
class _Series:
    """An event this process created, and how often it has happened so far."""

    name: str
    count: int = 1


@dataclass
class Api:
    """JSON access to the API server through one shared ApiClient."""

    client: kubernetes.client.ApiClient
    timeout: float = 20.0
    # (namespace, object uid, type, reason, note) → its event: a repeat patches that event's series.
    _series: OrderedDict[tuple[str, ...], _Series] = field(default_factory=OrderedDict, repr=False)
    _series_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_environment(cls) -> Api:
        load_config()
        return cls(kubernetes.client.ApiClient())

    def _call(self, method: str, url: str, body: Any = None, query: list[tuple[str, str]] | None = None,
              content_type: str = "application/json") -> dict[str, Any]:
        method, full_url, headers, body, _ = self.client.param_serialize(
            method=method, resource_path=url, query_params=query or [], body=body,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"])
        response = self.client.call_api(method, full_url, header_params=headers, body=body,
                                        _request_timeout=self.timeout)
        raw = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(raw) if raw else {}

    def _get_or_none(self, what: str, url: str) -> dict[str, Any] | None:
        """GET with retries; None when the object does not exist."""

        def call() -> dict[str, Any] | None:
            try:
                return self._call("GET", url)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        return _with_retries(what, call)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        return self._get_or_none(f"get {kind} {namespace}/{name}", path(kind, namespace, name))

    def get_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """kopf's peering object: ClusterKopfPeering when cluster-wide, KopfPeering per namespace."""
        url = (f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}" if namespace
               else f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}")
        return self._get_or_none(f"get peering {name}", url)

    def list_relays(self, namespaces: list[str]) -> list[dict[str, Any]]:
        """Every MailRelay in these namespaces, or in all when the list is empty."""
        prefix, plural = RESOURCES["MailRelay"]
        urls = [path("MailRelay", ns) for ns in namespaces] or [f"{prefix}/{plural}"]
        found: list[dict[str, Any]] = []
        for url in urls:
            listing = _with_retries(f"list {url}", functools.partial(self._call, "GET", url))
            # List items lack apiVersion/kind; the relay's Events name their object with them.
            found += [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "MailRelay", **item} for item in listing["items"]]
        return found

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace whose labels include all of `labels`."""
        return list(_with_retries(f"list {kind} in {namespace}", lambda: self._call(
            "GET", path(kind, namespace), query=[("labelSelector", label_selector(labels))]))["items"])

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this object (a uid precondition); already gone is fine."""

        def call() -> None:
            try:
                self._call("DELETE", path(kind, namespace, name),
                           body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}})
            except ApiException as exc:
                if exc.status not in (404, 409):  # gone already, or a different object by now
                    raise

        _with_retries(f"delete {kind} {namespace}/{name}", call)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as our field manager; `force` takes back fields someone edited by hand."""
        meta = obj["metadata"]
        url = path(obj["kind"], meta["namespace"], meta["name"])
        return _with_retries(
            f"apply {obj['kind']} {meta['namespace']}/{meta['name']}",
            lambda: self._call("PATCH", url, body=obj, content_type="application/apply-patch+yaml",
                               query=[("fieldManager", FIELD_MANAGER), ("force", "true")]))

    def post_event(self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str) -> None:
        """Record an events.k8s.io/v1 Event about `obj`; best effort, as an Event is news, not state.

        The same event again (object, type, reason and note) does not make a new object: it bumps
        the first one's `series` (count, lastObservedTime), as client-go's recorder does, so
        `kubectl get events` shows one line with a count. When that object has expired (the API
        server keeps events about an hour) a new one is created.
        """
        meta = obj["metadata"]
        namespace, note = meta["namespace"], message[:1024]
        key = (namespace, str(meta.get("uid") or meta["name"]), kind, reason, note)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._series_lock:
            try:
                if key in self._series and self._bump_series(namespace, self._series[key], now):
                    self._series.move_to_end(key)
                    return
                name = f"{meta['name']}.{time.time_ns():x}"
                event = {
                    "apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "regarding": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                                  "namespace": namespace, "uid": meta.get("uid")},
                    "type": kind, "reason": reason, "action": "Reconcile", "note": note, "eventTime": now,
                    "reportingController": FIELD_MANAGER, "reportingInstance": instance[:128],
                }
                _with_retries(f"post event {reason}", lambda: self._call("POST", path("Event", namespace), body=event))
                self._series[key] = _Series(name)
                while len(self._series) > EVENT_SERIES_KEPT:
                    self._series.popitem(last=False)
            except ApiError as exc:
                log.warning("could not post event %s for %s/%s: %s", reason, namespace, meta["name"], exc)

    def _bump_series(self, namespace: str, series: _Series, now: str) -> bool:
        """Count one more occurrence on an existing event; False when it is gone (expired)."""
        name, count = series.name, series.count

        def call() -> bool:
            try:
                self._call("PATCH", path("Event", namespace, name), content_type="application/merge-patch+json",
                           body={"series": {"count": count + 1, "lastObservedTime": now}})
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        bumped = _with_retries(f"update event {name}", call)
        if bumped:
            series.count = count + 1
        return bumped

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (conditions are replaced whole, as they are rendered whole)."""
        url = path(kind, namespace, name, "status")
        return _with_retries(
            f"patch status of {kind} {namespace}/{name}",
            lambda: self._call("PATCH", url, body={"status": status},
                               content_type="application/merge-patch+json"))
