"""The HA replicas as a variant ships them, and the API server they run against, behind one interface.

`ControlPlaneBackend` is the real control plane (tools/controlplane, the `control_plane` fixture):
the variant's objects are applied as an admin would (CRD, Namespace, ServiceAccount, RBAC), and each
replica authenticates with a token of the shipped ServiceAccount, so the Lease permissions are the
shipped ones. The tests use it. `EmulatorBackend` is the emulated API server
(tests/support/kube_emulator.py, no RBAC), for `bench/run.py --only failover`, which runs without Go.
"""

from __future__ import annotations

import json
import os
import urllib.error
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import yaml

from mailrelay.api.names import CHILD_KINDS, LEASE_NAME, RESOURCES

from support.emulator import Cluster
from support.operator import OperatorProcess, deployed_command
from support.paths import CHART
from support.shipped_operator import established
from support.tcp_proxy import TcpProxy
from support.wait import eventually

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


VARIANTS = {
    "kustomize-cluster-wide-ha": ["kubectl", "kustomize", "manifests/cluster-wide-ha"],
    "helm-replicas-2": ["helm", "template", "mr", str(CHART), "-n", "mailrelay-system", "--set", "replicas=2"],
}


class Replica(OperatorProcess):
    """One operator pod of the Deployment, reaching the API server through a TCP proxy of its own."""

    def __init__(self, deployment: dict[str, Any], index: int, backend: Backend, workdir: Path):
        self.pod_name = f"{deployment['metadata']['name']}-{index}-{os.getpid()}"
        api = urlparse(backend.url)
        self.proxy = TcpProxy(api.hostname or "127.0.0.1", api.port or 443)
        kubeconfig = workdir / f"{self.pod_name}.kubeconfig"
        config = backend.pod_kubeconfig(deployment, kubeconfig)
        config["clusters"][0]["cluster"]["server"] = f"{api.scheme}://127.0.0.1:{self.proxy.port}"
        kubeconfig.write_text(json.dumps(config))
        command, env, ports = deployed_command(deployment, kubeconfig, self.pod_name)
        super().__init__(command, env, ports, log=workdir / f"{self.pod_name}.log")

    def stop(self) -> None:
        super().stop()
        self.proxy.close()


class Fleet:
    """The replicas of one rendered Deployment, installed with the rest of what the variant ships."""

    def __init__(self, backend: Backend, docs: list[dict[str, Any]], workdir: Path):
        self.api = backend
        backend.install(docs)
        [deployment] = [d for d in docs if d["kind"] == "Deployment"]
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        self.lease = (deployment["metadata"]["namespace"], env.get("MAILRELAY_LEASE_NAME") or LEASE_NAME)
        self.replicas = [Replica(deployment, i, backend, workdir) for i in range(deployment["spec"]["replicas"])]
        self.tag = uuid.uuid4().hex[:6]

    def namespace(self, name: str) -> str:
        """A namespace of this test's own (the API server may be shared by the session)."""
        namespace = f"{name}-{self.tag}"
        self.api.create_namespace(namespace)
        return namespace

    def holder(self) -> str:
        lease = self.api.get(RESOURCES["Lease"].plural, *self.lease) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def leader(self, timeout: float = 40) -> Replica:
        """The replica whose pod name the Lease holder carries (waits for one)."""

        def find() -> Replica | None:
            holder = self.holder()
            return next((r for r in self.replicas if holder.startswith(f"{r.pod_name}_")), None)

        leader: Replica = eventually(find, what="one of these replicas to hold the Lease", timeout=timeout)
        return leader

    def reconciled_by(self, namespace: str) -> list[Replica]:
        return [r for r in self.replicas if f"reconciled {namespace}/relay" in r.log()]

    def wait_children(self, namespace: str, timeout: float = 60) -> None:
        eventually(
            lambda: all(self.api.list(RESOURCES[k].plural, namespace) for k in CHILD_KINDS),
            what=f"children in {namespace}",
            timeout=timeout,
        )
