"""Reads of the operator's own children served from memory: one list+watch per child kind.

A pass used to GET every child and LIST three kinds to find what to prune, about eight requests per
relay per pass, also when nothing had changed; at a thousand relays that was most of the API
server's work and all of an idle resync's. Now each child kind is listed once and then watched
(filtered by the label every child carries), and a pass reads the objects from that index.

What stays a request: a child the index does not hold (not created yet, or someone else's object
under that name, which has no label of ours: the conflict check must see it), every read before
the first list has arrived, Secrets (the operator may read Secrets only one at a time, by name),
and every write. An object the operator has just written is put into the index at once, so the
next pass does not take the watch's short delay for drift and write it again.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from mailrelay.kube.client import Api, ApiError

log = logging.getLogger("mailrelay")
WATCH_SECONDS = 240
RETRY_SECONDS = 2.0
Key = tuple[str, str, str]  # kind, namespace, name


class _Stored:
    """One object as compact JSON (a decoded Deployment takes ten times its JSON in Python objects, and
    decoding is faster than the deep copy a reader would need anyway), with what a lookup needs decoded."""

    __slots__ = ("labels", "raw", "version")

    def __init__(self, obj: dict[str, Any], kind: str, api_version: str) -> None:
        meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
        # Items of a list carry no apiVersion and kind; a pass compares them with the rendered object.
        whole = {**obj, "apiVersion": api_version, "kind": kind, "metadata": meta}
        self.raw = json.dumps(whole, separators=(",", ":")).encode()
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.version = str(meta.get("resourceVersion", ""))

    def newer_than(self, old: _Stored | None) -> bool:
        """resourceVersions are etcd revisions; compared only as numbers, else the newer arrival wins."""
        if old is None:
            return True
        try:
            return int(self.version) >= int(old.version)
        except ValueError:
            return True

    def decode(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.raw)
        return found


class ChildIndex:
    """Objects with `labels`, kept current by one watch per kind
    and served namespace by namespace. A scope is (kind, namespace or None for all)."""

    def __init__(
        self,
        api: Api,
        labels: dict[str, str],
        kinds: tuple[str, ...],
        namespaces: tuple[str, ...] = (),
        on_change: Callable[[dict[str, Any]], None] | None = None,
        passed: dict[str, Callable[[dict[str, Any]], None]] | None = None,
    ) -> None:
        """`on_change` is called with each object a watch reports added, changed or deleted (not
        with the initial list), after the index has taken it in. `passed` kinds are watched the same
        way (our label, server-side) but not kept: each listed, added or changed object is handed
        to its function and dropped (a deleted one too: it may carry the last state)."""
        self.api, self.labels, self.kinds = api, labels, kinds
        self.on_change, self.passed = on_change, dict(passed or {})
        self.scopes = [(kind, ns) for kind in (*kinds, *self.passed) for ns in (namespaces or (None,))]
        self._objects: dict[Key, _Stored] = {}
        self._lock = threading.Lock()
        self._synced: set[tuple[str, str | None]] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=scope, daemon=True, name=f"watch-{scope[0]}-{scope[1] or 'all'}")
            for scope in self.scopes
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def serves(self, kind: str, namespace: str) -> bool:
        """Has the index listed this kind in this namespace, so that its answers are complete?"""
        with self._lock:
            return (kind, None) in self._synced or (kind, namespace) in self._synced

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._objects.get((kind, namespace, name))
        return stored.decode() if stored is not None else None

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            found = [
                o
                for (k, ns, _), o in self._objects.items()
                if k == kind and ns == namespace and labels.items() <= o.labels.items()
            ]
        return [o.decode() for o in found]

    def observe(self, obj: dict[str, Any], kind: str | None = None) -> None:
        """Take in an object as the API server returned it (a write's answer or a watch event)."""
        kind = kind or obj["kind"]
        if kind not in self.kinds:
            return
        meta = obj["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        stored = _Stored(obj, kind, self.api.resources[kind].api_version)
        with self._lock:
            if stored.newer_than(self._objects.get(key)):
                self._objects[key] = stored

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def _replace(self, kind: str, namespace: str | None, items: builtins.list[dict[str, Any]]) -> None:
        with self._lock:
            for key in [k for k in self._objects if k[0] == kind and (namespace is None or k[1] == namespace)]:
                del self._objects[key]
            for item in items:
                self._objects[(kind, item["metadata"]["namespace"], item["metadata"]["name"])] = _Stored(
                    item, kind, self.api.resources[kind].api_version
                )
            self._synced.add((kind, namespace))

    def _pass_on(self, kind: str, items: builtins.list[dict[str, Any]]) -> None:
        for item in items:
            try:
                self.passed[kind]({**item, "kind": kind})
            except Exception:  # the watch must go on
                log.exception("handling a %s event failed", kind)

    def _run(self, kind: str, namespace: str | None) -> None:
        while not self._stop.is_set():
            try:
                items, version = self.api.list_all(kind, namespace, self.labels)
                if kind in self.passed:
                    self._pass_on(kind, items)
                else:
                    self._replace(kind, namespace, items)
                del items
                while not self._stop.is_set():  # until the server says the version is too old
                    expired = True
                    for event, obj in self.api.watch(kind, namespace, self.labels, version, WATCH_SECONDS):
                        if event == "ERROR" or self._stop.is_set():
                            break
                        version = obj["metadata"].get("resourceVersion", version)
                        if kind in self.passed:
                            if event in ("ADDED", "MODIFIED", "DELETED"):
                                self._pass_on(kind, [obj])
                            continue
                        if event == "DELETED":
                            self.forget(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
                        elif event in ("ADDED", "MODIFIED"):
                            self.observe(obj, kind)
                        else:
                            continue  # BOOKMARK
                        if self.on_change is not None:
                            try:
                                self.on_change({**obj, "kind": kind})
                            except Exception:  # the watch must go on
                                log.exception("handling a %s event failed", kind)
                    else:
                        expired = False
                    if expired:
                        break  # list again
            except ApiError as exc:
                log.warning("watch of %s in %s failed, listing again: %s", kind, namespace or "all namespaces", exc)
                with self._lock:
                    self._synced.discard((kind, namespace))
                self._stop.wait(RETRY_SECONDS)


class IndexedApi:
    """The API a pass uses: child reads from the index where it can answer them, the rest passed on."""

    def __init__(self, api: Api, index: ChildIndex) -> None:
        self.api, self.index = api, index

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.index.serves(kind, namespace):
            found = self.index.get(kind, namespace, name)
            if found is not None:
                return found
        return self.api.get(kind, namespace, name)  # not ours, not there yet, or not served from memory

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Only what carries our label: a pass lists to prune, and prunes only its own objects."""
        if self.index.serves(kind, namespace):
            return self.index.list(kind, namespace, labels)
        return self.api.list(kind, namespace, labels)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        applied = self.api.apply(obj)
        self.index.observe(applied, obj["kind"])
        return applied

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.api.delete(kind, namespace, name, uid)
        self.index.forget(kind, namespace, name)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.api.create(obj)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.api.patch_status(kind, namespace, name, status)
