"""The API server the HA tests run replicas against, behind one small interface.

`ControlPlaneBackend` is the real control plane (tools/controlplane, the `control_plane` fixture):
the variant's objects are applied as an admin would (CRD, Namespace, ServiceAccount, RBAC), and each
replica authenticates with a token of the shipped ServiceAccount, so the Lease permissions are the
shipped ones. The tests use it. `EmulatorBackend` is the emulated API server
(tests/kube_emulator.py, no RBAC), for `bench/run.py --only failover`, which runs without Go.
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from mailrelay.api.names import RESOURCES

from cluster import Cluster
from shipped_operator import established

PLURAL_PATHS = {r.plural: (r.prefix, r.namespaced) for r in RESOURCES.values()}


class Backend(Protocol):
    url: str

    def install(self, docs: list[dict[str, Any]]) -> None: ...

    def pod_kubeconfig(self, deployment: dict[str, Any], path: Path) -> dict[str, Any]: ...

    def create_namespace(self, name: str) -> None: ...

    def create(self, obj: dict[str, Any]) -> None: ...

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]: ...


class EmulatorBackend:
    def __init__(self, cluster: Cluster):
        self.cluster, self.url = cluster, cluster.url

    def install(self, docs: list[dict[str, Any]]) -> None:
        """Nothing to install: the emulator serves every resource it knows and checks no permission."""

    def pod_kubeconfig(self, deployment: dict[str, Any], path: Path) -> dict[str, Any]:
        return dict(json.loads(self.cluster.write_kubeconfig(path).read_text()))

    def create_namespace(self, name: str) -> None:
        """The emulator has namespaces only as parts of object paths."""

    def create(self, obj: dict[str, Any]) -> None:
        self.cluster.create(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(plural, namespace, name)

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return self.cluster.list(plural, namespace)


class ControlPlaneBackend:
    def __init__(self, plane: Any):
        self.plane, self.url = plane, plane.server

    def install(self, docs: list[dict[str, Any]]) -> None:
        namespaces = {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}
        for namespace in sorted(namespaces - {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}):
            self.create_namespace(namespace)  # `helm install --create-namespace` does this
        self.plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        if any(d["kind"] == "CustomResourceDefinition" for d in docs):
            [account] = [d["metadata"] for d in docs if d["kind"] == "ServiceAccount"]
            established(
                self.plane, f"system:serviceaccount:{account['namespace']}:{account['name']}", account["namespace"]
            )

    def pod_kubeconfig(self, deployment: dict[str, Any], path: Path) -> dict[str, Any]:
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        self.plane.service_account_kubeconfig(deployment["metadata"]["namespace"], account, path)
        return dict(json.loads(path.read_text()))

    def create_namespace(self, name: str) -> None:
        self.plane.kubectl("create", "namespace", name, check=False)

    def _path(self, plural: str, namespace: str, name: str = "") -> str:
        prefix, _ = PLURAL_PATHS[plural]
        return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

    def create(self, obj: dict[str, Any]) -> None:
        self.plane.request("POST", self._path(RESOURCES[obj["kind"]].plural, obj["metadata"]["namespace"]), obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.plane.request("GET", self._path(plural, namespace, name)))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return list(self.plane.request("GET", self._path(plural, namespace))["items"])


@pytest.fixture(name="backend")
def backend_fixture(control_plane: Any) -> Iterator[Backend]:
    yield ControlPlaneBackend(control_plane)
