"""The few Kubernetes API calls the operator makes, as plain JSON; one attempt each.

Raw JSON in and out over kube.http: the operator compares live objects with rendered dicts, and
typed models would only get in the way (the official client's models alone cost ~35 MiB).
Nothing here retries or sleeps: a failed call raises ApiError, and the caller's one retry policy
(the work queue's per-key backoff) decides when to try again.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from mailrelay.kube import config
from mailrelay.kube.http import Transport
from mailrelay.kube.resources import BUILTIN, Resource, label_selector

log = logging.getLogger(__name__)
EVENT_SERIES_KEPT = 1024  # repeats of this many distinct events are folded into their first object
CONNECTIONS = 32  # kopf's handler threads (16 by default), the resync's passes, and headroom


class ApiError(Exception):
    """An API call that failed; `status` is the HTTP code, 0 if there was no answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class NotLeader(RuntimeError):
    """A write refused because this replica cannot be sure it still holds the leader Lease."""


def _reason(body: bytes, fallback: str) -> str:
    """The API server's own words from a Status object, else the HTTP reason."""
    try:
        return str(json.loads(body).get("message") or fallback)
    except (TypeError, ValueError, AttributeError):
        return fallback


def _allow_writes() -> None:
    """The default write guard: a process without leader election may always write."""


@dataclass
class _Series:
    """An event this process created, and how often it has happened so far."""

    name: str
    count: int = 1


@dataclass
class Api:
    """JSON access to the API server through one shared keep-alive pool.

    `write_guard` runs before every write and raises NotLeader when this replica may not write:
    the last line of defence of leader election, for a pass that was already under way when the
    process froze or lost the API server and its Lease ran out meanwhile.
    """

    client: Transport
    resources: Mapping[str, Resource] = field(default_factory=lambda: dict(BUILTIN))  # kind → where it lives
    field_manager: str = "kube-client"  # the name server-side apply and Events record as the writer
    timeout: float = 20.0
    write_guard: Callable[[], None] = _allow_writes
    # (namespace, object uid, type, reason, note) → its event: a repeat patches that event's series.
    _series: OrderedDict[tuple[str, ...], _Series] = field(default_factory=OrderedDict, repr=False)
    _series_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def path(self, kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL of a kind's collection (all namespaces when `namespace` is None), or of one object."""
        return self.resources[kind].path(namespace, name, subresource)

    @classmethod
    def from_environment(cls, **fields: Any) -> Self:
        """In a pod, its service account; elsewhere the current kubeconfig context (config.ConfigError if none)."""
        return cls(Transport(config.from_environment(), CONNECTIONS), **fields)

    @classmethod
    def from_kubeconfig(cls, path: Path | str, **fields: Any) -> Self:
        return cls(Transport(config.from_kubeconfig(path), CONNECTIONS), **fields)

    def call(
        self,
        what: str,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        missing_ok: bool = False,
        guarded: bool = True,
    ) -> dict[str, Any] | None:
        """One request; ApiError on failure, or None for a 404 when `missing_ok`.

        Writes pass the write guard first, except the leader election's own (`guarded=False`).
        """
        if method != "GET" and guarded:
            self.write_guard()
        if query:
            url = f"{url}?{urllib.parse.urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        try:
            response = self.client.request(method, url, data, content_type, timeout or self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, f"{what}: {type(exc).__name__}: {exc}") from None
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, f"{what}: HTTP {response.status} {_reason(response.body, 'failed')}")
        return json.loads(response.body) if response.body else {}

    def text(self, what: str, url: str, query: list[tuple[str, str]], timeout: float) -> str:
        """A GET whose answer is text (a pod's log); ApiError on failure."""
        try:
            response = self.client.request(
                "GET", f"{url}?{urllib.parse.urlencode(query)}", timeout=timeout, accept="*/*"
            )
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, f"{what}: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, f"{what}: HTTP {response.status} {_reason(response.body, 'failed')}")
        return response.body.decode("utf-8", "replace")

    def _must(self, what: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        result = self.call(what, method, url, **kwargs)
        assert result is not None
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        return self.call(f"get {kind} {namespace}/{name}", "GET", self.path(kind, namespace, name), missing_ok=True)

    def list_all(self, kind: str, namespace: str | None, labels: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        """The objects of a kind with these labels (in all namespaces for None), and the list's resourceVersion."""
        url = self.path(kind, namespace)
        query = [("labelSelector", label_selector(labels))] if labels else []
        listing = self._must(f"list {url}", "GET", url, query=query)
        return listing["items"], listing["metadata"]["resourceVersion"]

    def watch(
        self, kind: str, namespace: str | None, labels: dict[str, str], resource_version: str, seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The watch events (type, object) after `resource_version`, for at most `seconds`."""
        url = self.path(kind, namespace)
        query = [
            *([("labelSelector", label_selector(labels))] if labels else []),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(seconds)),
        ]
        try:
            with self.client.stream(f"{url}?{urllib.parse.urlencode(query)}", timeout=seconds + 30) as (status, lines):
                if status != 200:
                    raise ApiError(status, f"watch {url}: HTTP {status}")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ApiError(0, f"watch {url}: {type(exc).__name__}: {exc}") from None

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this object (a uid precondition); already gone is fine."""
        try:
            self.call(
                f"delete {kind} {namespace}/{name}",
                "DELETE",
                self.path(kind, namespace, name),
                missing_ok=True,
                body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}},
            )
        except ApiError as exc:
            if exc.status != 409:  # 409: a different object by that name by now, not ours to delete
                raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST: unlike apply, fails (HTTP 409) when the name is taken, so it overwrites nothing."""
        meta = obj["metadata"]
        what = f"create {obj['kind']} {meta['namespace']}/{meta['name']}"
        try:
            return self._must(what, "POST", self.path(obj["kind"], meta["namespace"]), body=obj)
        except ApiError as exc:
            if exc.status == 409:
                raise ApiError(409, f"{what}: it already exists") from None
            raise

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as our field manager; `force` takes back fields someone edited by hand."""
        meta = obj["metadata"]
        return self._must(
            f"apply {obj['kind']} {meta['namespace']}/{meta['name']}",
            "PATCH",
            self.path(obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", self.field_manager), ("force", "true")],
        )

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None:
        """Record an events.k8s.io/v1 Event about `obj`; best effort, as an Event is news, not state.

        The same event again (object, type, reason and note) does not make a new object: it bumps
        the first one's `series` (count, lastObservedTime), as client-go's recorder does, so
        `kubectl get events` shows one line with a count. When that object has expired (the API
        server keeps events about an hour) a new one is created. With a `name`, at most once instead:
        posting that name again changes nothing, however many operator replicas or watch events try.
        """
        meta = obj["metadata"]
        namespace, note = meta["namespace"], message[:1024]
        key = (namespace, str(meta.get("uid") or meta["name"]), kind, reason, note)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._series_lock:
            try:
                if name is None and key in self._series and self._bump_series(namespace, self._series[key], now):
                    self._series.move_to_end(key)
                    return
                event_name = name or f"{meta['name']}.{time.time_ns():x}"
                event = {
                    "apiVersion": self.resources["Event"].api_version,
                    "kind": "Event",
                    "metadata": {"name": event_name, "namespace": namespace},
                    "regarding": {
                        "apiVersion": obj.get("apiVersion"),
                        "kind": obj.get("kind"),
                        "name": meta["name"],
                        "namespace": namespace,
                        "uid": meta.get("uid"),
                    },
                    "type": kind,
                    "reason": reason,
                    "action": "Reconcile",
                    "note": note,
                    "eventTime": now,
                    "reportingController": self.field_manager,
                    "reportingInstance": instance[:128],
                }
                try:
                    self.call(f"post event {reason}", "POST", self.path("Event", namespace), body=event)
                except ApiError as exc:
                    if not (name and exc.status == 409):  # a named event posted already is fine
                        raise
                if name:
                    return
                self._series[key] = _Series(event_name)
                while len(self._series) > EVENT_SERIES_KEPT:
                    self._series.popitem(last=False)
            except ApiError as exc:
                log.warning("could not post event %s for %s/%s: %s", reason, namespace, meta["name"], exc)

    def _bump_series(self, namespace: str, series: _Series, now: str) -> bool:
        """Count one more occurrence on an existing event; False when it is gone (expired)."""
        bumped = self.call(
            f"update event {series.name}",
            "PATCH",
            self.path("Event", namespace, series.name),
            content_type="application/merge-patch+json",
            missing_ok=True,
            body={"series": {"count": series.count + 1, "lastObservedTime": now}},
        )
        if bumped is not None:
            series.count += 1
        return bumped is not None

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource (conditions are replaced whole, as they are rendered whole).

        With `resource_version` the patch applies only to that version of the object (else HTTP 409),
        so a status decided from a stale read never lands. None when the object is gone.
        """
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.call(
            f"patch status of {kind} {namespace}/{name}",
            "PATCH",
            self.path(kind, namespace, name, "status"),
            body=body,
            content_type="application/merge-patch+json",
            missing_ok=True,
        )

    def patch_json(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch (RFC 6902) as our field manager: lists replaced whole, which apply cannot do."""
        return self._must(
            f"patch {kind} {namespace}/{name}",
            "PATCH",
            self.path(kind, namespace, name),
            body=operations,
            content_type="application/json-patch+json",
            query=[("fieldManager", self.field_manager)],
        )
