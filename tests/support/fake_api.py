"""An in-memory API with the few calls a reconcile pass makes, for unit tests of one pass.

Objects get a uid, a resourceVersion and a generation; apply creates or replaces (as server-side
apply with force does for the fields we render); every write and every Event is recorded. No
network, no threads, no clock: what a test asserts is what the pass did.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any

from mailrelay.api.names import API_VERSION, KIND, RESOURCES
from mailrelay.kube.client import ApiError


class FakeApi:
    resources = RESOURCES

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.events: list[dict[str, str]] = []
        self._versions = itertools.count(1)

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

    def relay(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return self.put(
            {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        )

    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, namespace, name)]["status"] = copy.deepcopy(status)

    # --- what reconcile() calls ------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_relays(self, namespaces: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == KIND and (not namespaces or ns in namespaces)
        ]

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object as a user would (not counted as the operator's write)."""
        del self.objects[(kind, namespace, name)]

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and ns == namespace and labels.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"]))
        live = self.get(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        status = (live or {}).get("status")
        stored = self.put(copy.deepcopy(obj))
        if status is not None:
            self.set_status(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], status)
            stored["status"] = status
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

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("status", kind, name))
        obj = self.objects[(kind, namespace, name)]
        obj["status"] = {**(obj.get("status") or {}), **copy.deepcopy(status)}
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(obj)

    def post_event(self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str) -> None:
        self.events.append(
            {
                "object": obj["metadata"]["name"],
                "type": kind,
                "reason": reason,
                "message": message,
                "instance": instance,
            }
        )


class Store:
    """Objects by (kind, namespace, name); apply merges like a server, and every write is counted."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.writes.append(("apply", f"{obj['kind']}/{meta['name']}"))
        stored = copy.deepcopy(obj)
        stored["metadata"]["uid"] = f"uid-{meta['name']}"
        stored.setdefault("status", {})  # the server adds fields of its own
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace and labels.items() <= o["metadata"].get("labels", {}).items()
        ]

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete", f"{kind}/{name}"))
        del self.objects[(kind, namespace, name)]
