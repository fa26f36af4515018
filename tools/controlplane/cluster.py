"""Run a real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (the kubelet stand-in that makes nodes and pods Ready).

Everything lives in one folder: pki/, etcd/, logs/<component>.log, logs/audit.log and the admin kubeconfig.
The apiserver runs as a cluster does: RBAC and Node authorizers, the default admission plugins,
ServiceAccount token signing, and an audit log that records every request at Metadata level, so tests can
count writes and check which verbs a client used.
"""

from __future__ import annotations

import atexit
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .build import KWOK_STAGES, Binaries, ensure_binaries
from .pki import make_pki
from .processes import Processes, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CIDR = "10.96.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers a namespace-scoped operator relies on: owner-reference garbage collection, Deployments
# down to Pods, StatefulSets with their claims bound to statically provisioned volumes, namespace
# deletion, and ServiceAccounts with their tokens and CA bundle. Node health is
# kwok's alone: no node-lifecycle controller marks its pods NotReady when a heartbeat is late on a busy
# machine, and so admission does not taint new nodes not-ready for that controller to lift.
CONTROLLERS = (
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "statefulset-controller",
    "persistentvolume-binder-controller",
)
# On top of the default plugins: NodeRestriction as kubeadm enables it, and the owner-reference check some
# distributions enable, under which blockOwnerDeletion needs update on the owner's finalizers.
# With real nodes (tools/node): Services get endpoints (kube-proxy programs nothing without EndpointSlices),
# Services without selectors get them mirrored, and PodDisruptionBudgets are evaluated.
NODE_CONTROLLERS = ("endpointslice-controller", "endpointslice-mirroring-controller", "disruption-controller")
# The apiserver's client certificate towards kubelets (logs, exec, port-forward).
KUBELET_CLIENT = {"kubelet-client": ("kube-apiserver-kubelet-client", "system:masters")}
ADMISSION = ("NodeRestriction", "OwnerReferencesPermissionEnforcement")
NO_ADMISSION = ("TaintNodesByCondition",)
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


def kubectl_path() -> str:
    """The kubectl the project installs (.tools/bin), else KUBECTL, else the one on PATH."""
    for candidate in (os.environ.get("KUBECTL"), str(ROOT / ".tools" / "bin" / "kubectl")):
        if candidate and Path(candidate).is_file():
            return candidate
    return "kubectl"


class ControlPlane:
    """One control plane in `folder`. `start()` returns once the API answers and the kwok nodes are Ready."""

    def __init__(
        self,
        folder: Path,
        *,
        nodes: int = 2,
        binaries: Binaries | None = None,
        extra_args: dict[str, list[str]] | None = None,
        bind_address: str = "127.0.0.1",
        real_nodes: bool = False,
        clients: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        """`nodes` kwok nodes. `real_nodes`: also serve kubelets (tools/node): the endpoint controllers, the
        apiserver's kubelet client, nodes reached by InternalIP; with `bind_address` the address they reach the
        apiserver on (a veth of the node's), and `clients` more client certificates (name -> CN, O)."""
        self.folder = folder.resolve()
        self.nodes = nodes
        self.binaries = binaries
        self.extra_args = extra_args or {}  # component name -> more flags (the bench raises client QPS)
        self.bind_address = bind_address
        self.real_nodes = real_nodes
        self.clients = {**(clients or {}), **(KUBELET_CLIENT if real_nodes else {})}
        self.pki = self.folder / "pki"
        self.logs = self.folder / "logs"
        self.kubeconfig = self.folder / "kubeconfig"
        self.audit_log = self.logs / "audit.log"
        self.server = ""
        self._processes = Processes(self.logs, self.folder)
        self._ssl: ssl.SSLContext | None = None
        self.startup_seconds = 0.0

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> ControlPlane:
        started = time.monotonic()
        self.binaries = self.binaries or ensure_binaries()
        atexit.register(self.stop)
        self.logs.mkdir(parents=True, exist_ok=True)
        loopback = self.bind_address.startswith("127.")
        make_pki(self.pki, extra_ips=() if loopback else (self.bind_address,), clients=self.clients)
        self._ssl = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self._ssl.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        deadline = started + timeout
        try:
            etcd = self._start_etcd()
            _wait_for(lambda: _http_ok(f"{etcd}/health"), deadline, "etcd", self.logs / "etcd.log")
            self._start_apiserver(etcd)
            _wait_for(lambda: self._ready("/readyz"), deadline, "kube-apiserver", self.logs / "kube-apiserver.log")
            for component in ("kube-controller-manager", "kube-scheduler"):
                self._write_kubeconfig(self.folder / f"{component}.kubeconfig", component)
            self._start_controller_manager()
            self._start(
                "kube-scheduler",
                [
                    self.binaries.path("kube-scheduler"),
                    f"--kubeconfig={self.folder / 'kube-scheduler.kubeconfig'}",
                    "--leader-elect=false",
                    "--secure-port=0",
                ],
            )
            if self.nodes:
                self._start_kwok()
                self._create_nodes()
                _wait_for(self._nodes_ready, deadline, "kwok nodes Ready", self.logs / "kwok.log")
            _wait_for(
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
                deadline,
                "the default ServiceAccount",
                self.logs / "kube-controller-manager.log",
            )
        except BaseException:
            self.stop()
            raise
        # Written last, so a script can wait for the file and then find the API answering.
        staging = self.kubeconfig.with_name(".kubeconfig.tmp")
        self._write_kubeconfig(staging, "admin")
        staging.rename(self.kubeconfig)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop in reverse order: SIGTERM, then SIGKILL after 10 s."""
        self._processes.stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_running(self) -> None:
        """Raise if a component died: a test failure then names it instead of timing out."""
        self._processes.check_running()

    # -- for tests and people ------------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane (admin unless another kubeconfig is given)."""
        done = subprocess.run(
            [kubectl_path(), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API call; returns the decoded JSON answer, raises urllib.error.HTTPError on failure."""
        return json.loads(self._call(method, path, body) or b"null")

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, context=self._ssl, timeout=30) as answer:
            return bytes(answer.read())

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 86400
    ) -> Path:
        """Mint a token for an existing ServiceAccount (TokenRequest API) and write a kubeconfig using it."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        user = {"token": answer["status"]["token"]}
        path.write_text(json.dumps(self._kubeconfig(f"system:serviceaccount:{namespace}:{name}", user, namespace)))
        path.chmod(0o600)
        return path

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """The audit log's events so far (one JSON object a line; the apiserver writes it synchronously)."""
        with self.audit_log.open() as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    # -- components ----------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Component name -> process id, for the components still running."""
        return self._processes.pids()

    def _start(self, name: str, argv: list[str]) -> None:
        self._processes.start(name, [*argv, *self.extra_args.get(name, [])])

    def _start_etcd(self) -> str:
        assert self.binaries
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self._start(
            "etcd",
            [
                self.binaries.path("etcd"),
                "--name=controlplane",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=controlplane={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        return client

    def _start_apiserver(self, etcd: str) -> None:
        assert self.binaries
        port = free_port()
        self.server = f"https://{self.bind_address}:{port}"
        loopback = self.bind_address.startswith("127.")
        node_flags = (
            [
                f"--kubelet-client-certificate={self.pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={self.pki / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
            if self.real_nodes
            else []
        )
        (self.folder / "audit-policy.yaml").write_text(AUDIT_POLICY)
        pki = self.pki
        self._start(
            "kube-apiserver",
            [
                self.binaries.path("kube-apiserver"),
                f"--etcd-servers={etcd}",
                f"--bind-address={self.bind_address}",
                f"--secure-port={port}",
                f"--advertise-address={self.bind_address}",
                # A loopback address is not a valid endpoint of `kubernetes`; a node's veth address is.
                f"--endpoint-reconciler-type={'none' if loopback else 'lease'}",
                *node_flags,
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION)}",
                f"--disable-admission-plugins={','.join(NO_ADMISSION)}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--audit-policy-file={self.folder / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--profiling=false",
            ],
        )

    def _start_controller_manager(self) -> None:
        assert self.binaries
        self._start(
            "kube-controller-manager",
            [
                self.binaries.path("kube-controller-manager"),
                f"--kubeconfig={self.folder / 'kube-controller-manager.kubeconfig'}",
                f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if self.real_nodes else ()))}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                "--leader-elect=false",
                "--secure-port=0",
            ],
        )

    def _start_kwok(self) -> None:
        assert self.binaries
        self._write_kubeconfig(self.folder / "kwok.kubeconfig", "admin")
        self._start(
            "kwok",
            [
                self.binaries.path("kwok"),
                f"--kubeconfig={self.folder / 'kwok.kubeconfig'}",
                f"--config={self.binaries.data('kwok', KWOK_STAGES)}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
            ],
        )

    def _create_nodes(self) -> None:
        for index in range(self.nodes):
            name = f"kwok-node-{index}"
            self.request(
                "POST",
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                    },
                },
            )

    # -- readiness -----------------------------------------------------------------------------------
    def _ready(self, path: str) -> bool:
        self.check_running()
        try:
            return self._call("GET", path).strip() == b"ok"
        except (urllib.error.URLError, OSError):
            return False

    def _exists(self, path: str) -> bool:
        self.check_running()
        try:
            self.request("GET", path)
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def _nodes_ready(self) -> bool:
        self.check_running()
        nodes = self.request("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        ready = [
            n
            for n in nodes
            for c in n.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return len(ready) == self.nodes

    def write_kubeconfig(self, path: Path, identity: str) -> Path:
        """A kubeconfig for one of the client certificates (admin, or a name given in `clients`)."""
        self._write_kubeconfig(path, identity)
        return path

    def _write_kubeconfig(self, path: Path, identity: str) -> None:
        user = {
            "client-certificate": str(self.pki / f"{identity}.crt"),
            "client-key": str(self.pki / f"{identity}.key"),
        }
        path.write_text(json.dumps(self._kubeconfig(identity, user, "default")))
        path.chmod(0o600)

    def _kubeconfig(self, user_name: str, user: dict[str, str], namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "mailrelay-controlplane",
            "clusters": [
                {
                    "name": "mailrelay-controlplane",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki / "ca.crt")},
                }
            ],
            "users": [{"name": user_name, "user": user}],
            "contexts": [
                {
                    "name": "mailrelay-controlplane",
                    "context": {"cluster": "mailrelay-controlplane", "user": user_name, "namespace": namespace},
                }
            ],
        }


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(check: Any, deadline: float, what: str, log: Path) -> None:
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise TimeoutError(f"{what} not ready in time; last lines of {log}:\n{tail}")
