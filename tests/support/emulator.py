"""The emulated API server on a background event loop, with a small synchronous client.

The operator talks to the emulator over real HTTP and watch streams through a kubeconfig, exactly as
it would to a cluster. Tests change objects over HTTP too, so every change reaches the watches.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import threading
from pathlib import Path
from typing import Any

import kmock
import requests

from mailrelay.api.names import RESOURCES

from support.kube_emulator import ApiServer
from support.wait import eventually

CHILD_PLURALS = ("configmaps", "deployments", "services", "networkpolicies")
PATHS = {r.plural: r.prefix for r in RESOURCES.values()}
GROUPS = {r.plural: r.group for r in RESOURCES.values()}


class Cluster:
    """An ApiServer served on 127.0.0.1 from its own thread, with a small synchronous client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ApiServer()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the emulated API server did not start")
        self.http = requests.Session()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.server, kmock.Server(self.server) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "emulator", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
                }
            )
        )
        return path

    # --- a tiny client -------------------------------------------------------------------------

    def _url(self, plural: str, namespace: str, name: str = "", sub: str = "") -> str:
        url = f"{self.url}{PATHS[plural]}/namespaces/{namespace}/{plural}"
        return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = RESOURCES[obj["kind"]].plural
        response = self.http.post(self._url(plural, obj["metadata"]["namespace"]), json=obj)
        response.raise_for_status()
        return dict(response.json())

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any], sub: str = "") -> dict[str, Any]:
        response = self.http.patch(
            self._url(plural, namespace, name, sub),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()
        return dict(response.json())

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.http.delete(self._url(plural, namespace, name)).raise_for_status()

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.server.stored(GROUPS[plural], plural, namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.server.stored_list(GROUPS[plural], plural, namespace)

    def writes(self, namespace: str | None = None) -> builtins.list[tuple[str, str]]:
        """Write requests so far, optionally only those on objects in one namespace."""
        return [w for w in list(self.server.writes) if namespace is None or f"/{namespace}/" in w[1]]

    def create_cluster_object(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.url}{path}", json=obj)
        response.raise_for_status()
        return dict(response.json())

    def fail(
        self,
        method: str,
        plural: str,
        status: int,
        times: int = 1,
        sub: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.loop.call_soon_threadsafe(self.server.fail, method, plural, status, times, sub, namespace)

    def faults_left(self, plural: str, namespace: str) -> int:
        """How many injected faults for this resource and namespace have not been hit yet."""
        return sum(f.times for f in list(self.server.faults) if f.plural == plural and f.namespace == namespace)


# --- what the tests on the emulated server wait for ----------------------------------------------
def ready(cluster: Cluster, namespace: str, name: str = "relay") -> dict[str, Any] | None:
    obj = cluster.get("mailrelays", namespace, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)


def wait_reason(cluster: Cluster, namespace: str, reason: str, name: str = "relay") -> dict[str, Any]:
    return eventually(
        lambda: (c := ready(cluster, namespace, name)) and c["reason"] == reason and c,
        what=f"Ready reason {reason} in {namespace}",
    )


def wait_children(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        found = {p: cluster.list(p, namespace) for p in CHILD_PLURALS}
        return {p: objs[0] for p, objs in found.items()} if all(len(o) == 1 for o in found.values()) else None

    return eventually(check, what=f"four children in {namespace}")


def roll_out(cluster: Cluster, namespace: str, replicas: int = 1, ready_replicas: int | None = None) -> None:
    """Play the Deployment controller: report the current generation rolled out."""
    [deployment] = cluster.list("deployments", namespace)
    cluster.patch(
        "deployments",
        namespace,
        deployment["metadata"]["name"],
        {
            "status": {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas if ready_replicas is None else ready_replicas,
                "availableReplicas": replicas if ready_replicas is None else ready_replicas,
            }
        },
        sub="status",
    )
