"""The node's processes: containerd, the kubelet, kube-proxy and kube-router's firewall, in the slot's namespace.

Each is started as a cluster's node runs it (containerd and the kubelet by their config files, kube-proxy
by its KubeProxyConfiguration, kube-router with only its NetworkPolicy controller), with its own client
certificate, its log in `<folder>/logs/<name>.log`, and is killed with the process that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

from . import config
from .cleanup import data_dir
from .network import Slot, in_netns
from controlplane import Binaries, ControlPlane
from controlplane.processes import Processes

# Machine-wide sysctls the kubelet sets once at start (setupKernelTunables) unless protectKernelDefaults,
# with which it refuses to start on a machine that differs. This machine is shared: the values are put back
# as soon as the kubelet has written them (nothing in the kubelet reads them again).
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
KUBELET_TUNABLES = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
TUNABLES_LOCK = Path("/run/mailrelay-operator/node/kernel-tunables.lock")
ORDER = ("containerd", "kubelet", "kube-proxy", "kube-router")


def identities(node_name: str) -> dict[str, tuple[str, str]]:
    """Client certificates the control plane signs for the node: file stem -> (CN, O). The kubelet's is the
    Node authorizer's form; kube-proxy's is bound to system:node-proxier by the bootstrap policy."""
    return {
        "kubelet": (f"system:node:{node_name}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", ""),
        "kube-router": ("system:kube-router", ""),
    }


class Node:
    def __init__(
        self, slot: Slot, folder: Path, binaries: Binaries, plane: ControlPlane, sandbox_image: str, mirror: str
    ) -> None:
        self.slot, self.folder, self.binaries, self.plane = slot, folder, binaries, plane
        self.name = f"mailrelay-node-{slot.number}"
        self.sandbox_image, self.mirror = sandbox_image, mirror
        self.data = data_dir(slot)
        self.logs = folder / "logs"
        self.processes = Processes(self.logs, folder)

    def start(self, timeout: float = 120) -> Node:
        deadline = time.monotonic() + timeout
        self._write_files()
        self._start("containerd", ["containerd", "--config", str(self.folder / "containerd.toml")])
        socket = self.slot.run_dir / "containerd.sock"
        self._wait(lambda: socket.exists() and self._containerd_ok(), deadline, "containerd")
        with _kernel_tunables_kept():
            self._start_kubelet(deadline)
        # kube-router reads its Node at start and exits without it; kube-proxy takes its addresses from it.
        self._wait(self._registered, deadline, "the kubelet registering the Node")
        self._start(
            "kube-proxy", [self.binaries.path("kube-proxy"), f"--config={self.folder / 'kube-proxy.yaml'}", "--v=1"]
        )
        self._start(
            "kube-router",
            [
                self.binaries.path("kube-router"),
                f"--kubeconfig={self.folder / 'kube-router.kubeconfig'}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--run-loadbalancer=false",
                "--enable-cni=false",
                f"--hostname-override={self.name}",
                f"--service-cluster-ip-range={config.SERVICE_CIDR}",
                "--metrics-port=0",
                "--v=1",
            ],
        )
        return self

    def _start_kubelet(self, deadline: float) -> None:
        self._start(
            "kubelet",
            [
                self.binaries.path("kubelet"),
                f"--config={self.folder / 'kubelet.yaml'}",
                f"--kubeconfig={self.folder / 'kubelet.kubeconfig'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.slot.node_ip}",
                f"--root-dir={self.data / 'kubelet'}",
                f"--cert-dir={self.data / 'kubelet' / 'pki'}",
                "--v=1",
            ],
        )
        # Once the kubelet has written its values (or given up), the machine's can be put back.
        settle = min(deadline, time.monotonic() + 30)
        while time.monotonic() < settle and not all(_read_tunable(k) == v for k, v in KUBELET_TUNABLES.items()):
            self.check_running()
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM in reverse order (the kubelet leaves pods to containerd; cleanup removes them)."""
        self.processes.stop()

    def check_running(self) -> None:
        self.processes.check_running()

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """containerd's own client on this node's socket (ctr; the CRI namespace is k8s.io)."""
        return subprocess.run(
            ["ctr", "--address", str(self.slot.run_dir / "containerd.sock"), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    # -- internals -----------------------------------------------------------------------------------
    def _write_files(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():  # the kubelet's cgroupRoot must exist in each
            if (hierarchy / "cgroup.procs").exists():
                (hierarchy / self.slot.cgroup).mkdir(exist_ok=True)
        for folder in (self.slot.run_dir, self.data / "cni" / "net.d", self.data / "certs.d"):
            folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "containerd.toml").write_text(config.containerd_toml(self.slot, self.data, self.sandbox_image))
        config.write_registry_mirrors(self.data / "certs.d", self.mirror)
        (self.data / "cni" / "net.d" / "10-mailrelay.conflist").write_text(config.cni_conflist(self.slot, self.data))
        (self.data / "resolv.conf").write_text("# no resolvers: a pod's names are the cluster's (CoreDNS)\n")
        kubelet = config.kubelet_config(self.slot, self.data, self.plane.pki / "ca.crt")
        (self.folder / "kubelet.yaml").write_text(kubelet)
        (self.folder / "kube-proxy.yaml").write_text(
            config.kube_proxy_config(self.slot, self.folder / "kube-proxy.kubeconfig", self.name)
        )
        for identity in identities(self.name):
            self.plane.write_kubeconfig(self.folder / f"{identity}.kubeconfig", identity)

    def _start(self, name: str, argv: list[str]) -> None:
        self.processes.start(name, in_netns(self.slot, argv))

    def _containerd_ok(self) -> bool:
        return self.ctr("version").returncode == 0

    def _registered(self) -> bool:
        try:
            self.plane.request("GET", f"/api/v1/nodes/{self.name}")
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            self.check_running()
            if check():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready in time; see {self.logs}")


def _read_tunable(name: str) -> str:
    return (Path("/proc/sys") / name).read_text().strip()


@contextlib.contextmanager
def _kernel_tunables_kept() -> Iterator[None]:
    """Put back the machine's values of KERNEL_TUNABLES after the kubelet set its own (one node at a time)."""
    TUNABLES_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with TUNABLES_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = {name: _read_tunable(name) for name in KERNEL_TUNABLES}
        try:
            yield
        finally:
            for name, value in before.items():
                with contextlib.suppress(OSError):
                    (Path("/proc/sys") / name).write_text(value)
