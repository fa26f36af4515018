"""Where each kind lives in the API (group, version, plural) and the URLs built from that.

Generic Kubernetes knowledge only: the caller adds its own custom resources to the table it hands
to `kube.client.Api`, so this layer knows nothing of the kinds it serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        """The URL prefix: /api/v1 for the core group, /apis/<group>/<version> otherwise."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL of the collection (all namespaces when `namespace` is None), or of one object."""
        result = f"{self.prefix}/namespaces/{namespace}/{self.plural}" if namespace else f"{self.prefix}/{self.plural}"
        if name:
            result += f"/{name}"
        if subresource:
            result += f"/{subresource}"
        return result


# The built-in kinds a controller of namespaced workloads reads or writes.
BUILTIN: Mapping[str, Resource] = {
    "ConfigMap": Resource("", "v1", "configmaps"),
    "Service": Resource("", "v1", "services"),
    "Secret": Resource("", "v1", "secrets"),
    "Event": Resource("events.k8s.io", "v1", "events"),
    "Pod": Resource("", "v1", "pods"),
    "Deployment": Resource("apps", "v1", "deployments"),
    "StatefulSet": Resource("apps", "v1", "statefulsets"),
    "ReplicaSet": Resource("apps", "v1", "replicasets"),
    "PodDisruptionBudget": Resource("policy", "v1", "poddisruptionbudgets"),
    "NetworkPolicy": Resource("networking.k8s.io", "v1", "networkpolicies"),
    "Lease": Resource("coordination.k8s.io", "v1", "leases"),
}


def label_selector(match: Mapping[str, str]) -> str:
    """The selector string form (`a=b,c=d`) of equality labels, as status.selector and list calls take it."""
    return ",".join(f"{key}={value}" for key, value in sorted(match.items()))
