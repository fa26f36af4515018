"""The few Kubernetes API calls the operator makes, as plain JSON; one attempt each.

The official client's ApiClient is used for transport and auth only (raw JSON in and out): the
operator compares live objects with rendered dicts, and typed models would only get in the way.
Nothing here retries or sleeps: a failed call raises ApiError, and the caller's one retry policy
(kopf's backoff for relay events, the next resync otherwise) decides when to try again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from mailrelay.identity import API_VERSION, FIELD_MANAGER, KIND, RESOURCES

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An API call that failed; `status` is the HTTP code, 0 if there was no answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class NotLeader(RuntimeError):
    """A write refused because this replica cannot be sure it still holds the leader Lease."""


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the current kubeconfig context."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    """The URL of a kind's collection (all namespaces when `namespace` is None), or of one object."""
    resource = RESOURCES[kind]
    result = f"{resource.prefix}/namespaces/{namespace}/{resource.plural}" if namespace \
        else f"{resource.prefix}/{resource.plural}"
    if name:
        result += f"/{name}"
    if subresource:
        result += f"/{subresource}"
    return result


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _allow_writes() -> None:
    """The default write guard: a process without leader election may always write."""


@dataclass
class Api:
    """JSON access to the API server through one shared ApiClient.

    `write_guard` runs before every write and raises NotLeader when this replica may not write:
    the last line of defence of leader election, for a pass that was already under way when the
    process froze or lost the API server and its Lease ran out meanwhile.
    """

    client: kubernetes.client.ApiClient
    timeout: float = 20.0
    write_guard: Callable[[], None] = _allow_writes

    @classmethod
    def from_environment(cls) -> Api:
        load_config()
        return cls(kubernetes.client.ApiClient())

    def call(self, what: str, method: str, url: str, body: Any = None, query: list[tuple[str, str]] | None = None,
             content_type: str = "application/json", timeout: float | None = None,
             missing_ok: bool = False, guarded: bool = True) -> dict[str, Any] | None:
        """One request; ApiError on failure, or None for a 404 when `missing_ok`.

        Writes pass the write guard first, except the leader election's own (`guarded=False`).
        """
        if method != "GET" and guarded:
            self.write_guard()
        method, full_url, headers, body, _ = self.client.param_serialize(
            method=method, resource_path=url, query_params=query or [], body=body,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"])
        try:
            response = self.client.call_api(method, full_url, header_params=headers, body=body,
                                            _request_timeout=timeout or self.timeout)
            raw = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"{what}: {type(exc).__name__}: {exc}") from None
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status <= 299:
            failure = ApiException(http_resp=response)
            raise ApiError(response.status, f"{what}: HTTP {response.status} {_reason(failure)}")
        return json.loads(raw) if raw else {}

    def _must(self, what: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        result = self.call(what, method, url, **kwargs)
        assert result is not None
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        return self.call(f"get {kind} {namespace}/{name}", "GET", path(kind, namespace, name), missing_ok=True)

    def list_relays(self, namespaces: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        """Every MailRelay in these namespaces, or in all when the list is empty."""
        found: list[dict[str, Any]] = []
        for url in [path(KIND, ns) for ns in namespaces] or [path(KIND, None)]:
            listing = self._must(f"list {url}", "GET", url)
            # List items lack apiVersion/kind; the relay's Events name their object with them.
            found += [{"apiVersion": API_VERSION, "kind": KIND, **item} for item in listing["items"]]
        return found

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace whose labels include all of `labels`."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return list(self._must(f"list {kind} in {namespace}", "GET", path(kind, namespace),
                               query=[("labelSelector", selector)])["items"])

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this object (a uid precondition); already gone is fine."""
        try:
            self.call(f"delete {kind} {namespace}/{name}", "DELETE", path(kind, namespace, name), missing_ok=True,
                      body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}})
        except ApiError as exc:
            if exc.status != 409:  # 409: a different object by that name by now, not ours to delete
                raise

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as our field manager; `force` takes back fields someone edited by hand."""
        meta = obj["metadata"]
        return self._must(f"apply {obj['kind']} {meta['namespace']}/{meta['name']}", "PATCH",
                          path(obj["kind"], meta["namespace"], meta["name"]), body=obj,
                          content_type="application/apply-patch+yaml",
                          query=[("fieldManager", FIELD_MANAGER), ("force", "true")])

    def post_event(self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str) -> None:
        """Record a core/v1 Event about `obj`; best effort, as an Event is news, not state."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": kind, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": instance[:128], "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self.call(f"post event {reason}", "POST", path("Event", meta["namespace"]), body=event)
        except ApiError as exc:
            log.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (conditions are replaced whole, as they are rendered whole)."""
        return self._must(f"patch status of {kind} {namespace}/{name}", "PATCH",
                          path(kind, namespace, name, "status"), body={"status": status},
                          content_type="application/merge-patch+json")
