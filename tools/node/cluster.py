"""A control plane with one real node: what `make cluster` starts and the `node` test fixture uses.

Order: take a slot (cleaning what a crashed run left in it), make the node's namespace and veth, start the
control plane listening on the host's end of the veth, the local registry beside it (after pushing any
image that changed), the add-ons (CoreDNS, kube-router's grants), then the node's processes; ready once
the node is Ready and CoreDNS is.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from . import cleanup, network
from .images import SANDBOX_IMAGE, publish
from .node import Node, identities
from .registry import Registry, storage
from controlplane import Binaries, ControlPlane, ensure_binaries

ADDONS = Path(__file__).resolve().parent / "addons"
REGISTRY_PORT = 5000


class NodeCluster:
    def __init__(self, folder: Path, *, kwok_nodes: int = 0) -> None:
        self.folder = folder.resolve()
        self.kwok_nodes = kwok_nodes
        self.slot: network.Slot | None = None
        self.plane: ControlPlane | None = None
        self.registry: Registry | None = None
        self.node: Node | None = None
        self.built: dict[str, str] = {}
        self.startup_seconds = 0.0

    def start(self, timeout: float = 300) -> NodeCluster:
        atexit.register(self.stop)
        binaries = ensure_binaries(group="controlplane").merged(ensure_binaries(group="node"))
        started = time.monotonic()
        try:
            self.slot = slot = network.take_slot()
            cleanup.clean(slot)  # leftovers of a crashed run in this slot
            network.create(slot)
            name = f"mailrelay-node-{slot.number}"
            self.plane = ControlPlane(
                self.folder / "controlplane",
                nodes=self.kwok_nodes,
                binaries=binaries,
                bind_address=slot.host_ip,
                real_nodes=True,
                clients=identities(name),
            )
            self.plane.start()
            self.registry = Registry(
                self.folder / "registry",
                REGISTRY_PORT,
                host=slot.host_ip,
                data=storage(),
                binary=binaries.path("registry"),
            ).start()
            self.built, prefix = publish(self.registry)  # what changed is built, what is not there pushed
            mirror = f"{slot.host_ip}:{REGISTRY_PORT}/{prefix}"
            for addon in sorted(ADDONS.glob("*.yaml")):  # first, so kube-router finds its grants at start
                self.plane.kubectl("apply", "-f", str(addon))
            self.node = Node(slot, self.folder / "node", binaries, self.plane, SANDBOX_IMAGE, mirror).start()
            deadline = time.monotonic() + timeout
            self._wait(self._node_ready, deadline, "the node Ready")
            self._wait(self._dns_ready, deadline, "CoreDNS Ready")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """The node, then its pods (their watches would hold the API server's shutdown open), the registry and
        the control plane while the veth they listen on still exists (the API server calls itself on that
        address as it stops), then the rest: mounts, cgroups, the namespace and veth."""
        if self.node is not None:
            self.node.stop()
        if self.slot is not None:
            cleanup.kill_processes(self.slot)
        for part in (self.registry, self.plane):
            if part is not None:
                part.stop()
        if self.slot is not None:
            cleanup.clean(self.slot)
            self.slot.release()
            self.slot = None

    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests and people ------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        assert self.plane
        return self.plane.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.plane
        return self.plane.kubectl(*args, input=input, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def check_running(self) -> None:
        assert self.plane and self.node
        self.plane.check_running()
        self.node.check_running()

    @property
    def binaries(self) -> Binaries:
        assert self.plane and self.plane.binaries
        return self.plane.binaries

    # -- readiness -----------------------------------------------------------------------------------
    def _node_ready(self) -> bool:
        assert self.node
        nodes = self.get("nodes")["items"]
        return any(n["metadata"]["name"] == self.node.name and _condition(n, "Ready") for n in nodes)

    def _dns_ready(self) -> bool:
        pods = self.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
        return any(_condition(p, "Ready") for p in pods)

    def _wait(self, check: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            self.check_running()
            if check():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what} not in time; logs in {self.folder}")


def _condition(obj: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))
