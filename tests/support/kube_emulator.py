"""A test-only subclass of kmock's KubernetesEmulator with the API-server behaviour the operator meets.

EMULATED, for injected faults only (409/429/500/503 on chosen requests): a real kube-apiserver does not
produce those on demand. Every other test of the operator runs on the real control plane
(tools/controlplane, tests/apiserver/test_operator_cluster.py).

kmock 0.8's emulator stores objects as plain dicts and mutates state before any user reaction. For
kopf that falls short: objects get no uid, resourceVersion or generation; watches ignore
`resourceVersion` and replay everything as ADDED; apply-patch cannot create; an injected error still
changes state. This subclass keeps kmock's server, request parsing, discovery and reaction matching,
and replaces only the object store behind the fallbacks:

- uid, creationTimestamp, a cluster-wide resourceVersion and `generation` (bumped on spec changes);
- LIST returns the current resourceVersion; WATCH streams events after the one given (or the current
  objects as ADDED first when none is given), honouring `timeoutSeconds`;
- merge, strategic-merge (as merge), JSON patch (jsonpatch) and apply patch (create when missing;
  otherwise a merge: fields dropped from the applied object are NOT removed, unlike real SSA);
- the status subresource: PATCH .../status changes only status, the main resource never does;
- a write that changes nothing bumps nothing and emits no event, as on a real server;
- `fail(...)` injects Kubernetes-style errors before any state change; `writes` records every write;
- PUT (update) of Leases with the resourceVersion precondition (409 when stale), which kmock cannot
  route: what leader election needs.

Still missing, so no test relies on them: schema validation and defaulting, garbage collection of
owned objects, SSA field ownership, strategic-merge list semantics, label selectors beyond equality,
and namespaces as objects (/api/v1/namespaces, which kmock cannot parse, is answered with the
namespaces that hold objects and a watch that never reports anything).
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import apps, k8s

LEASE_PATH = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<namespace>[^/]+)/leases/(?P<name>[^/]+)$")
STATUS_SUBRESOURCE = {
    ("mailrelay.dev", "mailrelays"),
    ("apps", "deployments"),
    ("", "services"),
    ("apps", "statefulsets"),
    ("policy", "poddisruptionbudgets"),
    ("", "pods"),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
RESOURCES = {
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/services": ("Service", True, {"status"}),
    "v1/secrets": ("Secret", True, set()),
    "v1/events": ("Event", True, set()),
    "v1/namespaces": ("Namespace", False, set()),
    "apps/v1/deployments": ("Deployment", True, {"status", "scale"}),
    "apps/v1/statefulsets": ("StatefulSet", True, {"status", "scale"}),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, {"status"}),
    "v1/pods": ("Pod", True, {"status"}),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, set()),
    "events.k8s.io/v1/events": ("Event", True, set()),
    "mailrelay.dev/v1alpha1/mailrelays": ("MailRelay", True, {"status"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, {"status"}),
    "coordination.k8s.io/v1/leases": ("Lease", True, set()),
}


@dataclass
class Fault:
    method: str
    plural: str
    status: int
    times: int
    subresource: str | None = None
    namespace: str | None = None  # None: every namespace


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    store: dict[tuple[str, str, str | None, str], dict[str, Any]] = attrs.field(factory=dict, init=False)
    events: list[tuple[int, tuple[str, str], dict[str, Any]]] = attrs.field(factory=list, init=False)
    writes: list[tuple[str, str]] = attrs.field(factory=list, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    rv: int = attrs.field(default=1000, init=False)
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, namespaced, subresources) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
            )

    # --- test-side helpers -------------------------------------------------------------------

    def fail(
        self,
        method: str,
        plural: str,
        status: int,
        times: int = 1,
        subresource: str | None = None,
        namespace: str | None = None,
    ) -> Fault:
        """The next `times` requests of this method on this resource get `status`, changing nothing."""
        fault = Fault(method.upper(), plural, status, times, subresource, namespace)
        self.faults.append(fault)
        return fault

    def stored(self, group: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One stored object (not kmock's `get`, which is an HTTP request)."""
        obj = self.store.get((group, plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def stored_list(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (g, p, ns, _), o in sorted(self.store.items())
            if (g, p) == (group, plural) and (namespace is None or ns == namespace)
        ]

    # --- request handling --------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock cannot parse /api/v1/namespaces (kopf lists and watches it when serving named
        # namespaces): answer it here with the namespaces that hold objects, and an idle watch.
        if raw_request.path == "/api/v1/namespaces":
            if raw_request.query.get("watch") == "true":
                response = aiohttp.web.StreamResponse()
                await response.prepare(raw_request)
                await asyncio.sleep(float(raw_request.query.get("timeoutSeconds") or 60))
                return response
            names = sorted({ns for (_, _, ns, _) in self.store if ns})
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "NamespaceList",
                    "metadata": {"resourceVersion": str(self.rv)},
                    "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names],
                }
            )
        if raw_request.method == "PUT" and (match := LEASE_PATH.match(raw_request.path)):
            return await self._replace_lease(match["namespace"], match["name"], await raw_request.json())
        return await super().__call__(raw_request)

    async def _replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> aiohttp.web.Response:
        key = ("coordination.k8s.io", "leases")
        old = self.store.get((*key, namespace, name))
        if old is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        if (body.get("metadata") or {}).get("resourceVersion") != old["metadata"]["resourceVersion"]:
            return aiohttp.web.json_response(
                {"kind": "Status", "code": 409, "reason": "Conflict", "message": "the object has been modified"},
                status=409,
            )
        self.writes.append(("update", f"leases/{namespace}/{name}"))
        if self._changed is None:
            self._changed = asyncio.Condition()
        obj = copy.deepcopy(body)
        obj["metadata"].update(name=name, namespace=namespace)
        stored = self._store(key, obj, old)
        await self._emit("MODIFIED", key, stored)
        return aiohttp.web.json_response(stored)

    async def _handle(self, request: kmock.Request) -> Any:
        # Skip KubernetesEmulator's own state mutation; keep kmock's reaction matching and fallbacks.
        del self._requests[:-1]  # kmock matches each request against all earlier ones: keep only this one
        resource = request.resource
        if resource is not None and request.method is not None:
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method == request.method.value.upper()
                    and fault.plural == resource.plural
                    and fault.subresource == request.subresource
                    and fault.namespace in (None, request.namespace)
                ):
                    fault.times -= 1
                    raise k8s.KubernetesError(
                        status=fault.status, reason="Injected", message=f"injected HTTP {fault.status}"
                    )
        if self._changed is None:
            self._changed = asyncio.Condition()
        return await apps.RawHandler._handle(self, request)

    @staticmethod
    def _key(request: kmock.Request) -> tuple[str, str]:
        assert request.resource is not None
        return (request.resource.group or "", request.resource.plural or "")

    def _body(self, request: kmock.Request) -> Any:
        if isinstance(request.data, dict | list):
            return request.data
        return yaml.safe_load(request.body) if request.body else None

    async def _emit(self, kind: str, key: tuple[str, str], obj: dict[str, Any]) -> None:
        self.events.append((self.rv, key, {"type": kind, "object": copy.deepcopy(obj)}))
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def _store(self, key: tuple[str, str], obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        else:
            for field in ("uid", "creationTimestamp", "name", "namespace"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
            changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }
            meta["generation"] = old["metadata"].get("generation", 1) + (1 if changed else 0)
        self.store[(*key, meta.get("namespace"), meta["name"])] = obj
        return obj

    async def _serve_list(self, request: kmock.Request) -> Any:
        key = self._key(request)
        selector = dict(p.split("=", 1) for p in (request.params.get("labelSelector") or "").split(",") if "=" in p)
        items = [
            o
            for o in self.stored_list(*key, request.namespace)
            if all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> Any:
        yield b""  # send the headers now, as a real server does
        key = self._key(request)
        since = int(request.params.get("resourceVersion") or 0)
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        deadline = time.monotonic() + timeout
        if not since:
            since = self.rv
            for obj in self.stored_list(*key, request.namespace):
                yield {"type": "ADDED", "object": obj}
        # Events are appended in resourceVersion order: find the first one after `since`, then
        # follow the log by position.
        position = next((i for i in range(len(self.events) - 1, -1, -1) if self.events[i][0] <= since), -1) + 1
        assert self._changed is not None
        while time.monotonic() < deadline:
            pending = self.events[position:]
            position += len(pending)
            for _, event_key, event in pending:
                meta = event["object"]["metadata"]
                if (
                    event_key == key
                    and (request.namespace is None or meta.get("namespace") == request.namespace)
                    and (request.name is None or meta["name"] == request.name)
                ):
                    yield event

            def grown(seen: int = position) -> bool:
                return len(self.events) > seen

            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(grown),
                        timeout=max(0.0, deadline - time.monotonic()),
                    )
                except TimeoutError:
                    return

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = self.stored(*self._key(request), request.namespace, request.name or "")
        if obj is None:
            raise k8s.KubernetesObjectNotFoundError()
        return obj

    async def _serve_create(self, request: kmock.Request) -> Any:
        key = self._key(request)
        obj = copy.deepcopy(self._body(request))
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace:
            meta["namespace"] = request.namespace
        if (*key, meta.get("namespace"), meta["name"]) in self.store:
            raise k8s.KubernetesObjectConflictError()
        self.writes.append(("create", f"{key[1]}/{meta.get('namespace')}/{meta['name']}"))
        stored = self._store(key, obj, None)
        await self._emit("ADDED", key, stored)
        return stored

    async def _serve_update(self, request: kmock.Request) -> Any:
        key = self._key(request)
        old = self.store.get((*key, request.namespace, request.name or ""))
        content_type = request.headers.get("Content-Type", "application/merge-patch+json").split(";")[0]
        body = self._body(request)
        where = f"/{request.subresource}" if request.subresource else ""
        self.writes.append(
            (f"patch:{content_type.split('/')[-1]}{where}", f"{key[1]}/{request.namespace}/{request.name}")
        )
        if old is None:
            if content_type != "application/apply-patch+yaml":
                raise k8s.KubernetesObjectNotFoundError()
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {}).update(name=request.name, namespace=request.namespace)
            stored = self._store(key, obj, None)
            await self._emit("ADDED", key, stored)
            return stored
        if content_type == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(old, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise k8s.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
        else:
            patched = merge_patch(old, body)
        if request.subresource == "status":
            patched = {**copy.deepcopy(old), "status": patched.get("status")}
        elif key in STATUS_SUBRESOURCE:
            patched["status"] = copy.deepcopy(old.get("status"))
            if patched["status"] is None:
                patched.pop("status")
        comparable = copy.deepcopy(patched)
        comparable["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if comparable == old:
            return copy.deepcopy(old)  # a no-op write changes nothing, not even the resourceVersion
        stored = self._store(key, patched, old)
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            del self.store[(*key, request.namespace, request.name or "")]
            await self._emit("DELETED", key, stored)
        else:
            await self._emit("MODIFIED", key, stored)
        return stored

    async def _serve_delete(self, request: kmock.Request) -> Any:
        key = self._key(request)
        store_key = (*key, request.namespace, request.name or "")
        old = self.store.get(store_key)
        if old is None:
            raise k8s.KubernetesObjectNotFoundError()
        wanted_uid = ((self._body(request) or {}).get("preconditions") or {}).get("uid")
        if wanted_uid and wanted_uid != old["metadata"]["uid"]:
            raise k8s.KubernetesError(status=409, reason="Conflict", message="uid precondition failed")
        self.writes.append(("delete", f"{key[1]}/{request.namespace}/{request.name}"))
        if old["metadata"].get("finalizers"):
            patched = merge_patch(old, {"metadata": {"deletionTimestamp": _now()}})
            stored = self._store(key, patched, old)
            await self._emit("MODIFIED", key, stored)
            return stored
        del self.store[store_key]
        self.rv += 1
        old["metadata"]["resourceVersion"] = str(self.rv)
        await self._emit("DELETED", key, old)
        return {"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}}
