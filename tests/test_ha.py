"""High availability as shipped: the replicas of each HA variant, started exactly as their manifests say.

The Deployment is taken from `kubectl kustomize manifests/cluster-wide-ha` and from `helm template`
with `replicas=2`; each replica runs the image's ENTRYPOINT with the container's args and env (the
downward API filled in as the kubelet would: its own pod name, the Deployment's namespace). Only
the liveness and metrics ports are moved off 8080 and 9090, as the replicas share this machine's loopback instead of
having one network namespace each. Each replica reaches the API server through its own TCP proxy,
so one replica can be cut off (a network split) while the others keep talking.

Against the real control plane (kube-apiserver, etcd, controller-manager, kwok), with the variant's
objects applied and each replica using a token of the shipped ServiceAccount.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from mailrelay.api.names import API_VERSION, CHILD_KINDS, KIND, LEASE_NAME, RESOURCES
from mailrelay.controller.settings import LeaderElection

from cluster import eventually
from conftest import ROOT
from ha_backend import Backend, backend_fixture  # noqa: F401  (a fixture)
from smtp_sink import free_port
from tcp_proxy import TcpProxy
from test_packaging import CHART, objects, run

VARIANTS = {
    "kustomize-cluster-wide-ha": ["kubectl", "kustomize", "manifests/cluster-wide-ha"],
    "helm-replicas-2": ["helm", "template", "mr", str(CHART), "-n", "mailrelay-system", "--set", "replicas=2"],
}
PORT_ARG = re.compile(r"^--(liveness|metrics)-port=(\d+)$")
FAILOVER_LIMIT = 30.0
pytestmark = pytest.mark.controlplane


def entrypoint() -> list[str]:
    """The operator image's ENTRYPOINT, resolved to this virtualenv's console script."""
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "image/operator/Dockerfile").read_text(), re.M)
    assert match, "image/operator/Dockerfile has no exec-form ENTRYPOINT"
    command = json.loads(match.group(1))
    return [shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0], *command[1:]]


class Replica:
    """One operator pod: the container's command line and environment, a log, and its own proxy."""

    def __init__(self, deployment: dict[str, Any], index: int, backend: Backend, workdir: Path):
        self.namespace = deployment["metadata"]["namespace"]
        self.pod_name = f"{deployment['metadata']['name']}-{index}-{os.getpid()}"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        api = urlparse(backend.url)
        self.proxy = TcpProxy(api.hostname or "127.0.0.1", api.port or 443)
        self.kubeconfig = workdir / f"{self.pod_name}.kubeconfig"
        config = backend.pod_kubeconfig(deployment, self.kubeconfig)
        config["clusters"][0]["cluster"]["server"] = f"{api.scheme}://127.0.0.1:{self.proxy.port}"
        self.kubeconfig.write_text(json.dumps(config))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILRELAY_", "POD_", "KUBE"))}
        for item in container.get("env", []):
            self.env[item["name"]] = self._value(item)
        self.env["KUBECONFIG"] = str(self.kubeconfig)
        args = [re.sub(r"\$\((\w+)\)", lambda m: self.env.get(m.group(1), m.group(0)), a) for a in container["args"]]
        assert any(a.startswith("--liveness-port=") for a in args), "the manifest's liveness port is gone"
        self.ports = {m.group(1): free_port() for m in map(PORT_ARG.match, args) if m}
        self.health_port = self.ports["liveness"]
        self.command = [
            *entrypoint(),
            *[PORT_ARG.sub(lambda m: f"--{m.group(1)}-port={self.ports[m.group(1)]}", a) for a in args],
        ]
        self.log_path = workdir / f"{self.pod_name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _value(self, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        field = item["valueFrom"]["fieldRef"]["fieldPath"]
        return {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}[field]

    def start(self) -> Replica:
        """Start (or restart, as the kubelet does after an exit) the container's process."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.proxy.close()

    def health(self) -> dict[str, Any]:
        return dict(requests.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).json())


def relay(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "relay", "namespace": namespace},
        "spec": {"mailFromFQDN": "apps.example.com"},
    }


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


@pytest.fixture
def fleet(request: pytest.FixtureRequest, backend: Backend, tools: Path, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(backend, objects(run(tools, *VARIANTS[request.param])), tmp_path)
    try:
        yield fleet
    finally:
        for replica in fleet.replicas:
            replica.stop()
        for replica in fleet.replicas:
            print(f"--- {replica.pod_name}\n{replica.log()[-3000:]}")


@pytest.mark.parametrize("fleet", list(VARIANTS), indirect=True)
def test_identical_replicas_elect_one_leader_and_fail_over(fleet: Fleet) -> None:
    assert len(fleet.replicas) >= 2, "an HA variant runs more than one replica"
    # Identical replicas: the same command line (but the moved ports), the same settings.
    assert len({tuple(PORT_ARG.sub(r"--\1-port=", a) for a in r.command) for r in fleet.replicas}) == 1
    assert (
        len(
            {
                tuple(sorted((k, v) for k, v in r.env.items() if k not in ("POD_NAME", "KUBECONFIG")))
                for r in fleet.replicas
            }
        )
        == 1
    )
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    standbys = [r for r in fleet.replicas if r is not leader]

    # Exactly one reconciles; the others answer their liveness probe while standing by.
    ha_one = fleet.namespace("ha-one")
    fleet.api.create(relay(ha_one))
    fleet.wait_children(ha_one)
    eventually(lambda: fleet.reconciled_by(ha_one) == [leader], what="the leader's pass")
    time.sleep(3)  # more than a resync period of the standbys, had they one
    assert fleet.reconciled_by(ha_one) == [leader]
    for standby in standbys:
        assert "standing by" in standby.log()
        health = eventually(standby.health, what="a standby's /healthz")
        assert health["leader"] is False and health["identity"].startswith(standby.pod_name)
    assert eventually(leader.health, what="the leader's /healthz")["leader"] is True

    # SIGKILL: no goodbye, the Lease must run out. Measure until a relay created now is reconciled.
    killed_at = time.monotonic()
    leader.signal(signal.SIGKILL)
    ha_failover = fleet.namespace("ha-failover")
    fleet.api.create(relay(ha_failover))
    fleet.wait_children(ha_failover, timeout=FAILOVER_LIMIT + 10)
    failover = time.monotonic() - killed_at
    print(f"failover after SIGKILL: {failover:.1f} s")
    assert failover < FAILOVER_LIMIT
    successor = fleet.leader()
    assert successor is not leader
    eventually(lambda: fleet.reconciled_by(ha_failover) == [successor], what="the successor's pass")
    leader.start()  # the kubelet restarts the killed container; it stands by
    eventually(lambda: "standing by" in leader.log().split("campaigning")[2], what="the restarted replica to stand by")

    # SIGTERM (a rolling update, a drain): the Lease is handed over, not left to expire.
    stopped_at = time.monotonic()
    successor.signal(signal.SIGTERM)
    ha_handover = fleet.namespace("ha-handover")
    fleet.api.create(relay(ha_handover))
    fleet.wait_children(ha_handover)
    handover = time.monotonic() - stopped_at
    print(f"handover after SIGTERM: {handover:.1f} s")
    assert successor.process is not None and successor.process.wait(30) == 0
    assert "released the leader Lease" in successor.log()
    assert handover < float(LeaderElection().lease_seconds)  # sooner than an expiry could allow
    assert fleet.leader() is leader


@pytest.mark.parametrize("fleet", ["kustomize-cluster-wide-ha"], indirect=True)
def test_a_split_leader_stops_before_another_starts(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    split_before = fleet.namespace("split-before")
    fleet.api.create(relay(split_before))
    fleet.wait_children(split_before)
    holder = fleet.holder()
    leader.proxy.cut()  # the leader can no longer renew, and hears nothing back
    cut_at = time.monotonic()
    exited_at = taken_at = None
    while taken_at is None and time.monotonic() - cut_at < 60:
        if exited_at is None and leader.exit_code() is not None:
            exited_at = time.monotonic()
        if fleet.holder() not in ("", holder):
            taken_at = time.monotonic()
        time.sleep(0.05)
    assert exited_at is not None and taken_at is not None, (exited_at, taken_at)
    print(
        f"split: old leader exited {exited_at - cut_at:.1f} s after the cut, "
        f"the new one took the Lease {taken_at - cut_at:.1f} s after it"
    )
    assert exited_at < taken_at  # never two leaders, not even for a moment
    assert leader.exit_code() not in (0, None)  # a lost Lease is an error exit, so the kubelet restarts it
    assert "lost the leader Lease" in leader.log()
    split_after = fleet.namespace("split-after")
    fleet.api.create(relay(split_after))
    fleet.wait_children(split_after)
    successor = fleet.leader()
    eventually(lambda: fleet.reconciled_by(split_after) == [successor], what="the new leader's pass")


@pytest.mark.parametrize("fleet", ["helm-replicas-2"], indirect=True)
def test_a_frozen_leader_that_wakes_up_writes_nothing_and_exits(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    holder = fleet.holder()
    leader.signal(signal.SIGSTOP)
    eventually(lambda: fleet.holder() not in ("", holder), what="another replica to take over", timeout=40)
    frozen = fleet.namespace("frozen")
    fleet.api.create(relay(frozen))
    fleet.wait_children(frozen)
    eventually(lambda: fleet.reconciled_by(frozen), what="the new leader's pass")
    woken_log = len(leader.log())
    leader.signal(signal.SIGCONT)
    eventually(lambda: leader.exit_code() is not None, what="the woken leader to exit", timeout=15)
    assert leader.exit_code() != 0
    after = leader.log()[woken_log:]
    assert "lost the leader Lease" in after and "reconciled" not in after
    successor = fleet.leader()
    assert fleet.reconciled_by(frozen) == [successor]
