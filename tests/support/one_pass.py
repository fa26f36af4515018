"""One reconcile pass in a test, without the operator's informers: every read goes to the given API.

For tests that drive a single pass at an API (the real control plane with the shipped grants, the
emulated one, or an in-memory store) and look at what it decided and did. The operator itself reads
from its caches (mailrelay.controller.caches); the decisions and writes are the same code.
"""

from __future__ import annotations

from typing import Any

from mailrelay.controller.observe import Memory
from mailrelay.controller.reconcile import Pass, Renders, run
from mailrelay.version import RELEASED_POSTFIX_IMAGE

CLOCK = "2026-01-01T00:00:00Z"


class UncachedStore:
    """A pass's Reader and Writer straight over an API with get/list_all and the writes."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.api.get(kind, namespace, name)
        return found

    def cached_list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        if hasattr(self.api, "list_all"):
            items = self.api.list_all(kind, namespace, labels)[0]
            return [{**item, "kind": kind} for item in items]
        found: list[dict[str, Any]] = self.api.list(kind, namespace, labels)
        return found

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cached(kind, namespace, name)

    def __getattr__(self, name: str) -> Any:  # create, apply, patch_json, delete, patch_status, post_event
        return getattr(self.api, name)


def one_pass(
    api: Any,
    body: dict[str, Any],
    *,
    clock: str = CLOCK,
    memory: Memory | None = None,
    default_image: str = RELEASED_POSTFIX_IMAGE,
    require_grant: bool = True,
) -> Pass:
    store = api if hasattr(api, "cached") else UncachedStore(api)
    return run(
        store,
        store,
        memory or Memory(),
        Renders(),
        body,
        clock=clock,
        default_image=default_image,
        instance="test",
        require_grant=require_grant,
    )


def scrape_once(
    relay: dict[str, Any], pods: list[tuple[str, str, bool]], *, port: int, read_log: Any = None, fetch: Any = None
) -> Any:
    """The operator's delivery scrape, one round, over relay pods (name, IP, ready) that its Deployment
    controls (a ReplicaSet between, as the Deployment controller makes them); returns the relay's Health."""
    from concurrent.futures import ThreadPoolExecutor

    from mailrelay.controller import scrape

    from support.fake_api import FakeApi

    api = FakeApi()
    relay = api.put(relay)
    labels = {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": relay["metadata"]["name"]}

    def controlled_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": owner.get("apiVersion", ""),
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]

    meta = {"namespace": relay["metadata"]["namespace"], "labels": labels}
    deployment = api.put(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                **meta,
                "name": f"mailrelay-{relay['metadata']['name']}",
                "ownerReferences": controlled_by(relay),
            },
        }
    )
    replicas = api.put(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                **meta,
                "name": f"{deployment['metadata']['name']}-1",
                "ownerReferences": controlled_by(deployment),
            },
        }
    )
    for name, address, ready in pods:
        api.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {**meta, "name": name, "ownerReferences": controlled_by(replicas)},
                "status": {"podIP": address, "conditions": [{"type": "Ready", "status": str(ready)}]},
            }
        )
    found = scrape.Scraper(
        api,
        api,
        lambda key: None,
        port=port,
        read_log=read_log,
        **({"fetch": fetch} if fetch else {}),
    )
    with ThreadPoolExecutor(4) as pool:
        found.round(pool)
    return found.health((relay["metadata"]["namespace"], relay["metadata"]["name"]))
