"""Bring a relay's children to the rendered state, writing only what differs and never what is not ours.

Writes are server-side apply with force: the operator is the only rightful manager of the fields it
renders, and force takes them back from a hand edit. An object is ours only when it carries our
controller owner reference; anything else with a child's name is left untouched and reported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubernetes.utils.quantity import parse_quantity

from mailrelay.api.names import APPLIED_HASH_ANNOTATION
from mailrelay.kube.client import ApiError

Action = Literal["created", "updated", "unchanged", "conflict", "deleted", "refused"]
WORKLOADS = ("Deployment", "StatefulSet")
# HTTP codes with which the API server refuses an object for good (malformed or invalid): retrying
# the same object cannot succeed, so it is not sent again until the rendered object changes.
REFUSED_STATUS = (400, 422)
CLAIMS_IMMUTABLE = (
    "spec.queue.storage cannot change on a running relay: a StatefulSet's volume claims are immutable. "
    "Put the previous size and storageClassName back (a claim can be expanded by editing the "
    "PersistentVolumeClaim itself, if its StorageClass allows it)"
)


class ObjectApi(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]: ...

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None: ...


@dataclass
class ChildResult:
    kind: str
    name: str
    action: Action
    live: dict[str, Any] | None = None
    owner: str = ""  # for a conflict: who owns the object instead; when refused by the server: refusal_key()
    message: str = ""  # when refused: why (the API server's words, or why it was not sent at all)


@dataclass
class ApplyResult:
    children: list[ChildResult] = field(default_factory=list)

    @property
    def conflicts(self) -> list[ChildResult]:
        return [c for c in self.children if c.action == "conflict"]

    @property
    def refused(self) -> list[ChildResult]:
        return [c for c in self.children if c.action == "refused"]

    @property
    def writes(self) -> list[ChildResult]:
        return [c for c in self.children if c.action in ("created", "updated", "deleted")]

    def live(self, kind: str) -> dict[str, Any] | None:
        return next((c.live for c in self.children if c.kind == kind), None)


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp the object with a digest of itself, so a removed field is noticed as a change too."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    meta = {
        **obj["metadata"],
        "annotations": {**obj["metadata"].get("annotations", {}), APPLIED_HASH_ANNOTATION: digest},
    }
    return {**obj, "metadata": meta}


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )


def describe_owner(obj: dict[str, Any]) -> str:
    refs = [r for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("controller")]
    return f"{refs[0].get('kind')}/{refs[0].get('name')}" if refs else "no controller"


def contains(desired: Any, live: Any, key: str = "") -> bool:
    """True when every field of `desired` is in `live` with the same value (the server may add more).

    Lists must match item by item: an extra container or port added by hand is drift. Resource
    quantities compare by value, as the API server rewrites e.g. 67108864 into 64Mi.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(v, live[k], k) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(contains(d, v, key) for d, v in zip(desired, live, strict=True))
        )
    if desired == live:
        return True
    if key in ("cpu", "memory", "ephemeral-storage", "sizeLimit", "storage") and isinstance(live, str | int):
        try:
            return bool(parse_quantity(desired) == parse_quantity(live))
        except ValueError:
            return False
    return False


def needs_apply(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    annotations = live.get("metadata", {}).get("annotations") or {}
    stamped = desired["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    return annotations.get(APPLIED_HASH_ANNOTATION) != stamped or not contains(desired, live)


def refusal_key(obj: dict[str, Any]) -> str:
    """Names one exact rendered object: kind, name and its applied hash."""
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta['name']}@{meta['annotations'][APPLIED_HASH_ANNOTATION]}"


def apply_children(api: ObjectApi, uid: str, desired: list[dict[str, Any]], refused: str = "") -> ApplyResult:
    """Apply each child in order; conflicts are reported, not written, and do not stop the others.

    A workload is not applied while the ConfigMap it mounts is someone else's: its pods would start
    on a foreign configuration. A StatefulSet whose claim template would change is refused, not sent
    to a server that would reject it on every pass. An object the API server refused for good (HTTP
    400/422) is reported as refused; `refused` is the key of the last refusal, so the very same
    object is not sent again (no write loop), while any change to it is.
    """
    result = ApplyResult()
    for obj in desired:
        obj = with_applied_hash(obj)
        kind, meta = obj["kind"], obj["metadata"]
        if refused and refusal_key(obj) == refused:
            result.children.append(ChildResult(kind, meta["name"], "refused", None, refused))
            continue
        live = api.get(kind, meta["namespace"], meta["name"])
        if live is not None and not owned_by(live, uid):
            result.children.append(ChildResult(kind, meta["name"], "conflict", live, describe_owner(live)))
            continue
        if kind in WORKLOADS and any(c.kind == "ConfigMap" for c in result.conflicts + result.refused):
            result.children.append(ChildResult(kind, meta["name"], "unchanged", live))
            continue
        if (
            kind == "StatefulSet"
            and live is not None
            and not contains(obj["spec"]["volumeClaimTemplates"], live.get("spec", {}).get("volumeClaimTemplates"))
        ):
            result.children.append(ChildResult(kind, meta["name"], "refused", live, message=CLAIMS_IMMUTABLE))
            continue
        if live is not None and not needs_apply(obj, live):
            result.children.append(ChildResult(kind, meta["name"], "unchanged", live))
            continue
        try:
            applied = api.apply(obj)
        except ApiError as exc:
            if exc.status not in REFUSED_STATUS:
                raise
            result.children.append(ChildResult(kind, meta["name"], "refused", live, refusal_key(obj), str(exc)))
            continue
        result.children.append(ChildResult(kind, meta["name"], "created" if live is None else "updated", applied))
    return result


def prune_services(api: ObjectApi, uid: str, service: dict[str, Any], labels: dict[str, str]) -> list[ChildResult]:
    """Delete Services this relay owns under a name it no longer renders (after `service.name` changed).

    Only the Service can be renamed by the spec; the other children are named after the relay.
    """
    meta = service["metadata"]
    return prune(api, uid, "Service", meta["namespace"], {meta["name"]}, labels)


def prune(
    api: ObjectApi, uid: str, kind: str, namespace: str, keep: set[str], labels: dict[str, str]
) -> list[ChildResult]:
    """Delete objects of `kind` this relay owns (controller reference with its uid) not named in `keep`.

    The delete is preconditioned on the uid, so nothing but the object we looked at can go.
    """
    stale = [o for o in api.list(kind, namespace, labels) if o["metadata"]["name"] not in keep and owned_by(o, uid)]
    for old in stale:
        api.delete(kind, namespace, old["metadata"]["name"], old["metadata"]["uid"])
    return [ChildResult(kind, o["metadata"]["name"], "deleted", None) for o in stale]
