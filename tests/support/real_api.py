"""A small admin client for the tests on the real control plane: get, list ours, apply, wait."""

from __future__ import annotations

import json
import urllib.error
from typing import Any

import yaml

from mailrelay.render.relay import CONFIG_HASH_ANNOTATION

from controlplane import ControlPlane
from support.wait import eventually

GROUP = "/apis/mailrelay.dev/v1alpha1"
PATHS = {
    "configmaps": "/api/v1",
    "services": "/api/v1",
    "secrets": "/api/v1",
    "pods": "/api/v1",
    "events": "/api/v1",
    "deployments": "/apis/apps/v1",
    "mailrelays": GROUP,
    "networkpolicies": "/apis/networking.k8s.io/v1",
    "statefulsets": "/apis/apps/v1",
    "poddisruptionbudgets": "/apis/policy/v1",
    "persistentvolumeclaims": "/api/v1",
}
CHILDREN = ("configmaps", "deployments", "services", "networkpolicies")


def url(plural: str, namespace: str, name: str = "", sub: str = "") -> str:
    return (
        f"{PATHS[plural]}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
    )


def get(plane: ControlPlane, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(plane.request("GET", url(plural, namespace, name)))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def ours(plane: ControlPlane, plural: str, namespace: str, instance: str | None = None) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/name%3Dmailrelay" + (f",app.kubernetes.io/instance%3D{instance}" if instance else "")
    return list(plane.request("GET", f"{url(plural, namespace)}?labelSelector={selector}")["items"])


def apply(plane: ControlPlane, obj: dict[str, Any]) -> dict[str, Any]:
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    found = get(plane, obj["kind"].lower() + "s", obj["metadata"]["namespace"], obj["metadata"]["name"])
    assert found is not None
    return found


def merge_patch(plane: ControlPlane, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    plane.kubectl("patch", f"{plural}/{name}", "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def ready(plane: ControlPlane, namespace: str, name: str = "relay") -> dict[str, Any] | None:
    obj = get(plane, "mailrelays", namespace, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)


def wait_reason(
    plane: ControlPlane,
    namespace: str,
    reason: str,
    name: str = "relay",
    timeout: float = 60,
    generation: int | None = None,
) -> dict[str, Any]:
    """Wait for the Ready condition's reason (for that generation of the spec, when given)."""

    def check() -> dict[str, Any] | None:
        condition = ready(plane, namespace, name)
        if condition and condition["reason"] == reason and generation in (None, condition["observedGeneration"]):
            return condition
        return None

    try:
        return eventually(check, timeout=timeout, what=f"Ready reason {reason} on {namespace}/{name}")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{describe(plane, namespace, name)}") from None


def describe(plane: ControlPlane, namespace: str, name: str = "relay") -> str:
    """What the relay, its Deployment and its pods say, for a failure message."""
    deployment = get(plane, "deployments", namespace, f"mailrelay-{name}") or {}
    lines = [
        f"relay status: {(get(plane, 'mailrelays', namespace, name) or {}).get('status')}",
        f"deployment generation {deployment.get('metadata', {}).get('generation')}, status: {deployment.get('status')}",
    ]
    lines += [
        f"pod {p['metadata']['name']} on {p['spec'].get('nodeName')}: {p['status'].get('phase')} "
        f"{p['status'].get('conditions')}"
        for p in pods(plane, namespace, name)
    ]
    return "\n".join(lines)


def wait_children(plane: ControlPlane, namespace: str, name: str = "relay") -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        found = {p: ours(plane, p, namespace, name) for p in CHILDREN}
        return {p: objs[0] for p, objs in found.items()} if all(len(o) == 1 for o in found.values()) else None

    # 120 s: a namespaced operator started by the test first waits out the previous one's Lease, and
    # the control plane shares two cores with three other test workers.
    return eventually(check, timeout=120, what=f"the children of {namespace}/{name}")


def pods(plane: ControlPlane, namespace: str, name: str = "relay") -> list[dict[str, Any]]:
    return [p for p in ours(plane, "pods", namespace, name) if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def template_hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])
