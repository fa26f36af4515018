"""A kind's objects in memory, kept current by list+watch, and told to whoever listens: client-go's informer.

Each informer lists its kind (in each served namespace, or all), then watches from the list's
resourceVersion; when the server says that version is too old, or the watch fails, it lists again
and reconciles its store with the list, reporting what appeared, changed *and disappeared* during
the gap. That last part is why the operator keeps its own informers rather than kopf's watches: a
cache that never hears of a relay deleted while its watch was down would reconcile a ghost.

Objects are stored as compact JSON, optionally reduced by `project` to the fields a reader needs (a
Pod's whole spec is ten times the few fields the operator reads), and decoded on each read, which is
also the copy a caller may change freely.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from mailrelay.kube.client import Api, ApiError

log = logging.getLogger(__name__)
WATCH_SECONDS = 240
RETRY_SECONDS = 2.0
Handler = Callable[[str, dict[str, Any]], None]  # (LISTED | ADDED | MODIFIED | DELETED, object)
Projection = Callable[[dict[str, Any]], dict[str, Any]]


class _Stored:
    __slots__ = ("labels", "raw", "version")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.raw = json.dumps(obj, separators=(",", ":")).encode()
        meta = obj.get("metadata") or {}
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


def _compact(obj: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """List items carry no apiVersion and kind; managedFields are never read and large."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "apiVersion": api_version, "kind": kind, "metadata": meta}


class Informer:
    """One kind, in `namespaces` (empty: all), optionally only objects with `labels`."""

    def __init__(
        self,
        api: Api,
        kind: str,
        namespaces: tuple[str, ...] = (),
        labels: dict[str, str] | None = None,
        project: Projection | None = None,
        handlers: list[Handler] | None = None,
    ) -> None:
        self.api, self.kind, self.labels = api, kind, dict(labels or {})
        self.api_version = api.resources[kind].api_version
        self.project = project
        self.handlers = list(handlers or [])
        self.scopes: list[str | None] = list(namespaces) or [None]
        self._objects: dict[tuple[str, str], _Stored] = {}
        self._lock = threading.Lock()
        self._synced: set[str | None] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(scope,), daemon=True, name=f"watch-{kind}-{scope or 'all'}")
            for scope in self.scopes
        ]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def synced(self, namespace: str | None = None) -> bool:
        """Has the first list of this namespace (or of every scope) arrived, so answers are complete?"""
        with self._lock:
            if namespace is None:
                return len(self._synced) == len(self.scopes)
            return None in self._synced or namespace in self._synced

    # -- reads -----------------------------------------------------------------------------------
    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._objects.get((namespace, name))
        return stored.decode() if stored is not None else None

    def list(self, namespace: str | None = None, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        wanted = (labels or {}).items()
        with self._lock:
            found = [
                o
                for (ns, _), o in self._objects.items()
                if (namespace is None or ns == namespace) and wanted <= o.labels.items()
            ]
        return [o.decode() for o in found]

    def known(self) -> builtins.list[tuple[str, str]]:
        with self._lock:
            return list(self._objects)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # -- writes of our own -----------------------------------------------------------------------
    def observe(self, obj: dict[str, Any]) -> None:
        """Take in an object as the API server returned it to a write of ours, before its watch event."""
        stored = self._store(obj)
        meta = obj["metadata"]
        with self._lock:
            key = (meta["namespace"], meta["name"])
            if stored.newer_than(self._objects.get(key)):
                self._objects[key] = stored

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((namespace, name), None)

    # -- the watch ---------------------------------------------------------------------------------
    def _store(self, obj: dict[str, Any]) -> _Stored:
        whole = _compact(obj, self.api_version, self.kind)
        return _Stored(self.project(whole) if self.project else whole)

    def _tell(self, event: str, stored: _Stored) -> None:
        obj = stored.decode()
        for handler in self.handlers:
            try:
                handler(event, obj)
            except Exception:  # the watch must go on
                log.exception("handling a %s event of %s failed", event, self.kind)

    def _replace(self, scope: str | None, items: builtins.list[dict[str, Any]]) -> None:
        """Make the store equal the list, and report each difference as the event it stands for; the
        first list reports everything as LISTED (what was there before this informer started)."""
        fresh = {(i["metadata"]["namespace"], i["metadata"]["name"]): self._store(i) for i in items}
        with self._lock:
            first = scope not in self._synced
            old = {k: v for k, v in self._objects.items() if scope is None or k[0] == scope}
            for key in old:
                del self._objects[key]
            self._objects.update(fresh)
            self._synced.add(scope)
        for key, stored in fresh.items():
            before = old.get(key)
            if before is None or before.raw != stored.raw:
                self._tell("LISTED" if first else "ADDED" if before is None else "MODIFIED", stored)
        for key, stored in old.items():
            if key not in fresh:
                self._tell("DELETED", stored)

    def _run(self, scope: str | None) -> None:
        while not self._stop.is_set():
            try:
                items, version = self.api.list_all(self.kind, scope, self.labels)
                self._replace(scope, items)
                del items
                while not self._stop.is_set():  # until the server says the version is too old
                    version, expired = self._watch(scope, version)
                    if expired:
                        break  # list again
            except ApiError as exc:
                log.warning("watch of %s in %s failed, listing again: %s", self.kind, scope or "all namespaces", exc)
                self._stop.wait(RETRY_SECONDS)

    def _watch(self, scope: str | None, version: str) -> tuple[str, bool]:
        for event, obj in self.api.watch(self.kind, scope, self.labels, version, WATCH_SECONDS):
            if event == "ERROR" or self._stop.is_set():
                return version, True
            version = obj["metadata"].get("resourceVersion", version)
            if event not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK
            meta = obj["metadata"]
            key, stored = (meta["namespace"], meta["name"]), self._store(obj)
            with self._lock:
                if event == "DELETED":
                    self._objects.pop(key, None)
                elif stored.newer_than(self._objects.get(key)):
                    self._objects[key] = stored
            self._tell(event, stored)
        return version, False
