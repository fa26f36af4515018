"""The benchmark's view of the cluster: watches over every namespace, and when each relay got where.

The bench sees what a user sees: a MailRelay's children (found by their controller owner reference)
and its status. Each fact is stamped with the monotonic time its watch event arrived, so a relay's
latency is (first time all its facts hold) - (time its create or patch was sent).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

Key = tuple[str, str]  # (namespace, relay name)


class Watch(threading.Thread):
    """One watch over all namespaces, re-opened where it left off if the server ends it."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        params: dict[str, str],
        handle: Callable[[str, dict[str, Any], float], None],
    ) -> None:
        super().__init__(daemon=True)
        self.session, self.url, self.params, self.handle = session, url, params, handle
        self.stopped = threading.Event()
        self.resource_version = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.stopped.is_set():
            params = {**self.params, "watch": "1", "allowWatchBookmarks": "true"}
            if self.resource_version:
                params["resourceVersion"] = self.resource_version
            try:
                with self.session.get(self.url, params=params, stream=True, timeout=(10, 600)) as answer:
                    answer.raise_for_status()
                    for line in answer.iter_lines():
                        if self.stopped.is_set():
                            return
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            self.resource_version = ""  # expired: list again from now
                            break
                        self.resource_version = obj.get("metadata", {}).get("resourceVersion", "")
                        if event.get("type") != "BOOKMARK":
                            self.handle(event["type"], obj, time.monotonic())
            except (requests.RequestException, ValueError) as exc:
                if self.stopped.is_set():
                    return
                self.error = exc
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopped.set()


def owner_key(obj: dict[str, Any], kind: str) -> Key | None:
    meta = obj.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return meta.get("namespace", ""), ref["name"]
    return None


def is_ready(relay: dict[str, Any]) -> bool:
    status = relay.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class Progress:
    """First-seen times of each relay's facts, fed by the watch threads."""

    def __init__(self, child_kinds: tuple[str, ...], marker_file: str = "main.cf") -> None:
        self.lock = threading.Lock()
        self.child_kinds = child_kinds
        self.marker_file = marker_file
        self.children: dict[str, dict[Key, float]] = {kind: {} for kind in child_kinds}
        self.markers: dict[str, dict[Key, float]] = {}  # text in the ConfigMap -> first seen
        self.observed: dict[int, dict[Key, float]] = {}  # status.observedGeneration -> first seen
        self.ready: dict[int, dict[Key, float]] = {}  # Ready True at that observedGeneration -> first seen
        self.wanted_markers: list[str] = []

    def on_relay(self, kind: str, relay: dict[str, Any], now: float) -> None:
        meta, status = relay.get("metadata", {}), relay.get("status") or {}
        generation = status.get("observedGeneration")
        if kind == "DELETED" or not isinstance(generation, int):
            return
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self.lock:
            self.observed.setdefault(generation, {}).setdefault(key, now)
            if is_ready(relay):
                self.ready.setdefault(generation, {}).setdefault(key, now)

    def on_child(self, child_kind: str) -> Callable[[str, dict[str, Any], float], None]:
        def handle(kind: str, obj: dict[str, Any], now: float) -> None:
            key = owner_key(obj, "MailRelay")
            if key is None or kind == "DELETED":
                return
            with self.lock:
                self.children[child_kind].setdefault(key, now)
                if child_kind == "ConfigMap":
                    text = (obj.get("data") or {}).get(self.marker_file, "")
                    for marker in self.wanted_markers:
                        if marker in text:
                            self.markers.setdefault(marker, {}).setdefault(key, now)

        return handle

    def created(self, key: Key) -> float | None:
        """When the relay had all its children and a status for generation 1."""
        with self.lock:
            times = [self.children[k].get(key) for k in self.child_kinds] + [self.observed.get(1, {}).get(key)]
        return None if None in times else max(t for t in times if t is not None)

    def updated(self, key: Key, generation: int, marker: str) -> float | None:
        """When the relay's ConfigMap carried `marker` and its status the new generation."""
        with self.lock:
            times = [self.markers.get(marker, {}).get(key), self.observed.get(generation, {}).get(key)]
        return None if None in times else max(t for t in times if t is not None)

    def ready_at(self, key: Key, generation: int) -> float | None:
        with self.lock:
            return self.ready.get(generation, {}).get(key)
