"""The operator's informers, and the reader and writer a pass uses through them.

One informer per kind: the relays (all of them), the children (by our managed-by label), the relay
pods and their ReplicaSets (by the same label, reduced to the few fields the delivery scrape and the
drain report read). Reads come from them; writes go to the API and their answers into the caches at
once, so the next pass does not mistake the watch's short delay for drift and write again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailrelay.api.names import CHILD_KINDS, CHILD_LABELS, KIND, MODE_CHILD_KINDS
from mailrelay.controller.client import OperatorApi
from mailrelay.kube.informer import Handler, Informer

WATCHED_CHILDREN = (*CHILD_KINDS, *MODE_CHILD_KINDS)


def _pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What the delivery scrape and the drain report read of a pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return {
        "apiVersion": pod["apiVersion"],
        "kind": pod["kind"],
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp", "resourceVersion")
            if k in meta
        },
        "status": {
            "podIP": status.get("podIP"),
            "conditions": [{"type": c.get("type"), "status": c.get("status")} for c in status.get("conditions") or []],
            "containerStatuses": [
                {
                    "name": c.get("name"),
                    "state": {
                        "terminated": {
                            "message": str(((c.get("state") or {}).get("terminated") or {}).get("message") or "")[:1024]
                        }
                    },
                }
                for c in status.get("containerStatuses") or []
            ],
        },
    }


def _owner_only(obj: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet is read only for who owns it."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "ownerReferences", "resourceVersion")
            if k in meta
        },
    }


class Caches:
    def __init__(self, api: OperatorApi, namespaces: tuple[str, ...] = ()) -> None:
        self.api = api

        def informer(
            kind: str, labels: dict[str, str] | None, project: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        ) -> Informer:
            return Informer(api, kind, namespaces, labels, project)

        self.by_kind: dict[str, Informer] = {KIND: informer(KIND, None)}
        for kind in WATCHED_CHILDREN:
            self.by_kind[kind] = informer(kind, CHILD_LABELS)
        self.by_kind["Pod"] = informer("Pod", CHILD_LABELS, _pod)
        self.by_kind["ReplicaSet"] = informer("ReplicaSet", CHILD_LABELS, _owner_only)

    def subscribe(self, on_relay: Handler, on_child: Handler, on_pod: Handler) -> None:
        """Who hears of changes: before `start`, so the first list is heard too."""
        self.by_kind[KIND].handlers.append(on_relay)
        for kind in WATCHED_CHILDREN:
            self.by_kind[kind].handlers.append(on_child)
        self.by_kind["Pod"].handlers.append(on_pod)

    @property
    def relays(self) -> Informer:
        return self.by_kind[KIND]

    def start(self) -> None:
        for found in self.by_kind.values():
            found.start()

    def stop(self) -> None:
        for found in self.by_kind.values():
            found.stop()

    def synced(self) -> bool:
        return all(found.synced() for found in self.by_kind.values())

    # -- the Reader of a pass ------------------------------------------------------------------------
    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.by_kind[kind].get(namespace, name)

    def cached_list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        return self.by_kind[kind].list(namespace, labels)

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(kind, namespace, name)

    # -- the Writer of a pass --------------------------------------------------------------------
    def _keep(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        if obj is not None and obj.get("kind") in self.by_kind:
            self.by_kind[obj["kind"]].observe(obj)
        return obj

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        created = self.api.create(obj)
        self._keep({**created, "kind": obj["kind"]})
        return created

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        applied = self.api.apply(obj)
        self._keep({**applied, "kind": obj["kind"]})
        return applied

    def patch_json(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        patched = self.api.patch_json(kind, namespace, name, operations)
        self._keep({**patched, "kind": kind})
        return patched

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.api.delete(kind, namespace, name, uid)
        if kind in self.by_kind:
            self.by_kind[kind].forget(namespace, name)

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        written = self.api.patch_status(kind, namespace, name, status, resource_version)
        return self._keep({**written, "kind": kind}) if written is not None else None

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None:
        self.api.post_event(obj, kind, reason, message, instance, name)
