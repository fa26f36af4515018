"""The one in-memory API for unit tests: what a pass, the informers and leader election call.

`FakeApi` is an `OperatorApi` whose calls never leave the process, so mypy holds every override to
the real signature and a method it does not fake fails loudly instead of passing. Objects get a uid,
a resourceVersion and a generation; apply creates or replaces (as server-side apply with force does
for the fields we render) and keeps the status; a status patch is a JSON merge patch with the
resourceVersion precondition; every write, every read and every Event is recorded. It is also a
pass's cache (`cached`, `cached_list`: reads that are not requests), the informers list and watch it
(the test pushes the watch events), and leader election reaches its Lease through `call`, with the
API server's resourceVersion preconditions. No network, no clock: what a test asserts is what the
code did.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import queue
import re
import uuid
from collections.abc import Iterator
from typing import Any

from mailrelay.api.names import API_VERSION, KIND, RESOURCES
from mailrelay.controller.client import OperatorApi
from mailrelay.kube.client import ApiError

Key = tuple[str, str, str]  # (kind, namespace, name)
Objects = list[dict[str, Any]]  # in the class, `list` is a method
WatchEvent = tuple[str, dict[str, Any]]
_OBJECT_URL = re.compile(
    r"^(?P<prefix>/apis?/.+)/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
_KINDS = {(r.prefix, r.plural): kind for kind, r in RESOURCES.items()}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies application/merge-patch+json: null deletes, objects merge."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _writes_allowed() -> None:
    """The write guard of a replica that leads; tests of the guard replace it."""


class FakeApi(OperatorApi):
    # Not the dataclass's: it would compare and print the ApiClient this fake does not have.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self) -> None:  # no ApiClient: nothing here goes over the network
        self.resources = RESOURCES
        self.field_manager = "mailrelay-operator"
        self.timeout = 0.0
        self.write_guard = _writes_allowed
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: builtins.list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.reads: builtins.list[tuple[str, str]] = []  # (verb, kind) of get and list calls
        self.events: builtins.list[dict[str, str]] = []
        self.calls: builtins.list[tuple[str, str, bool]] = []  # (method, url, guarded) of raw calls
        self.watch_events: dict[str, queue.Queue[WatchEvent | None]] = {}
        self.down = False  # the API server unreachable: every raw call fails as a refused connection
        self._versions = itertools.count(1)

    def __repr__(self) -> str:
        return f"FakeApi({len(self.objects)} objects, {len(self.writes)} writes)"

    # --- test-side helpers ---------------------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as a user would (not counted as the operator's write)."""
        meta = obj.setdefault("metadata", {})
        old = self.objects.get((obj["kind"], meta["namespace"], meta["name"]))
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta["generation"] = (old["metadata"]["generation"] + (old.get("spec") != obj.get("spec"))) if old else 1
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def stored(self, obj: dict[str, Any]) -> None:
        """Hold exactly this object, as a server returned it (its uid and resourceVersion included)."""
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj

    def relay(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return self.put(
            {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        )

    def edit(self, kind: str, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        """Change fields of an object's spec as its user would: a new generation."""
        obj = copy.deepcopy(self.objects[(kind, namespace, name)])
        obj["spec"] = {**obj.get("spec", {}), **spec}
        return self.put(obj)

    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, namespace, name)]["status"] = copy.deepcopy(status)

    def roll_out(self, kind: str, namespace: str, name: str, ready: int | None = None) -> None:
        """Play the workload controller: every wanted pod (or `ready` of them) ready with the current template."""
        obj = self.objects[(kind, namespace, name)]
        wanted = obj["spec"].get("replicas", 1)
        ready = wanted if ready is None else ready
        obj["status"] = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": wanted,
            "updatedReplicas": wanted,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object as a user would (not counted as the operator's write)."""
        del self.objects[(kind, namespace, name)]

    def kinds(self, namespace: str) -> set[str]:
        return {kind for kind, ns, _ in self.objects if ns == namespace}

    def push(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        """Send a watch event to whoever watches `kind`."""
        self._watch_queue(kind).put((event, obj))

    def end_watches(self) -> None:
        """End every watch (a watch that is not ended keeps its thread waiting)."""
        for events in self.watch_events.values():
            events.put(None)

    # --- what a pass calls -----------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("get", kind))
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> Objects:
        self.reads.append(("list", kind))
        return [copy.deepcopy(o) for o in self._matching(kind, namespace, labels)]

    # A pass's cache: reads that are not requests (the operator's come from its informers).
    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def cached_list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> Objects:
        return [copy.deepcopy(o) for o in self._matching(kind, namespace, labels)]

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A GET past the caches (a Secret, a foreign object): a request."""
        return self.get(kind, namespace, name)

    def patch_json(self, kind: str, namespace: str, name: str, operations: Objects) -> dict[str, Any]:
        """RFC 6902 `add`/`replace` of object members, the operations the operator sends."""
        self.writes.append(("patch", kind, name))
        obj = self.objects[(kind, namespace, name)]
        for operation in operations:
            *parents, last = operation["path"].lstrip("/").split("/")
            target = obj
            for part in parents:
                target = target[part]
            target[last] = copy.deepcopy(operation["value"])
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"]))
        live = self.objects.get((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]))
        stored = self.put(copy.deepcopy(obj))
        # The server keeps the status (and adds one of its own to a new object).
        stored["status"] = copy.deepcopy((live or {}).get("status") or {})
        self.set_status(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], stored["status"])
        return stored

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST: refused (409, as the API server does) when the name is taken."""
        meta = obj["metadata"]
        if (obj["kind"], meta["namespace"], meta["name"]) in self.objects:
            raise ApiError(409, f"create {obj['kind']} {meta['namespace']}/{meta['name']}: it already exists")
        self.writes.append(("create", obj["kind"], meta["name"]))
        return self.put(copy.deepcopy(obj))

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete", kind, name))
        if (live := self.objects.get((kind, namespace, name))) and live["metadata"]["uid"] == uid:
            del self.objects[(kind, namespace, name)]

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        """None when the object is gone; 409 when `resource_version` is not the object's any more."""
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, f"patch status of {kind} {namespace}/{name}: the object has been modified")
        self.writes.append(("status", kind, name))
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(obj)

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None:
        self.events.append(
            {
                "regarding": obj.get("kind", ""),
                "object": obj["metadata"]["name"],
                "type": kind,
                "reason": reason,
                "message": message,
                "instance": instance,
                "name": name or "",  # a named event is posted at most once
            }
        )

    # --- what the child index calls --------------------------------------------------------------

    def list_all(self, kind: str, namespace: str | None, labels: dict[str, str]) -> tuple[Objects, str]:
        """As the API server lists: items without apiVersion and kind."""
        items = [
            {k: copy.deepcopy(v) for k, v in o.items() if k not in ("apiVersion", "kind")}
            for o in self._matching(kind, namespace, labels)
        ]
        return items, "0"

    def watch(
        self, kind: str, namespace: str | None, labels: dict[str, str], resource_version: str, seconds: int
    ) -> Iterator[WatchEvent]:
        """The events the test pushes for `kind`, until it ends the watches."""
        events = self._watch_queue(kind)
        while (event := events.get()) is not None:
            if event[0] == "EXPIRED":
                return  # as a watch the server ends: the informer watches again from where it was
            yield event

    # --- what leader election calls: raw requests on its Lease ------------------------------------

    def call(
        self,
        what: str,
        method: str,
        url: str,
        body: Any = None,
        query: builtins.list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        missing_ok: bool = False,
        guarded: bool = True,
    ) -> dict[str, Any] | None:
        """GET, POST and PUT of one object by URL, with the server's 404 and 409 answers."""
        self.calls.append((method, url, guarded))
        if self.down:
            raise ApiError(0, f"{what}: connection refused")
        if method != "GET" and guarded:
            self.write_guard()
        match = _OBJECT_URL.match(url)
        assert match, f"no fake for {method} {url}"
        kind = _KINDS[(match["prefix"], match["plural"])]
        namespace, name = match["namespace"], match["name"] or (body or {}).get("metadata", {}).get("name")
        live = self.objects.get((kind, namespace, name))
        if method == "GET":
            if live is None:
                if missing_ok:
                    return None
                raise ApiError(404, f"{what}: not found")
            return copy.deepcopy(live)
        current = (live or {}).get("metadata", {}).get("resourceVersion")
        if (method == "POST" and live is not None) or (
            method == "PUT" and (live is None or body["metadata"].get("resourceVersion") != current)
        ):
            raise ApiError(409, f"{what}: conflict")
        assert method in ("POST", "PUT"), f"no fake for {method} {url}"
        self.writes.append(("create" if method == "POST" else "update", kind, name))
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[(kind, namespace, name)] = stored
        return copy.deepcopy(stored)

    # ---------------------------------------------------------------------------------------------

    def _matching(self, kind: str, namespace: str | None, labels: dict[str, str]) -> Objects:
        return [
            o
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and namespace in (None, ns) and labels.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def _watch_queue(self, kind: str) -> queue.Queue[WatchEvent | None]:
        return self.watch_events.setdefault(kind, queue.Queue())
