"""Comparing a rendered child with the live one: is it ours, does it need a write, which lists to take back.

Writes are server-side apply with force: the operator is the only rightful manager of the fields it
renders, and force takes them back from a hand edit. An object is ours only when it carries our
controller owner reference; anything else with a child's name is left untouched and reported.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mailrelay.api.names import APPLIED_HASH_ANNOTATION
from mailrelay.kube.quantity import parse_quantity

WORKLOADS = ("Deployment", "StatefulSet")
# HTTP codes with which the API server refuses an object for good (malformed or invalid): retrying
# the same object cannot succeed, so it is not sent again until the rendered object changes.
REFUSED_STATUS = (400, 422)
CLAIMS_IMMUTABLE = (
    "spec.queue.storage cannot change on a running relay: a StatefulSet's volume claims are immutable. "
    "Put the previous size and storageClassName back (a claim can be expanded by editing the "
    "PersistentVolumeClaim itself, if its StorageClass allows it)"
)


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
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


def list_fields(desired: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    """(JSON pointer, value) of every list under `spec` of a rendered object, outermost first.

    Server-side apply merges lists item by item, so an item someone added or renamed by hand (a
    second port named `smtp`) can make the merged object invalid: the API server then refuses every
    apply. Replacing these lists whole with a JSON patch takes the object back, whatever was done.
    """
    found: list[tuple[str, Any]] = []
    for key, value in desired.items():
        pointer = f"{path}/{key.replace('~', '~0').replace('/', '~1')}"
        if isinstance(value, list):
            found.append((pointer, value))
        elif isinstance(value, dict):
            found += list_fields(value, pointer)
    return found
