"""One replica of a rendered Deployment, run the way the kubelet runs a pod.

Every container of the pod runs under `runc run -d` in the pod's network namespace, in the order the
spec lists them, each with its stdout and stderr collected like its container log. Probes run on
their periods (exec probes with `runc exec`, httpGet from the node to the pod's address): a
startupProbe holds the others back until it passes, readiness sets the container's `ready`, and
liveness (or startup) failing `failureThreshold` times in a row kills and restarts that container
alone (same volumes, as restartPolicy Always does). The pod is ready when every container is.
`stop` is the kubelet's, for all containers at once: the preStop hook, SIGTERM, and SIGKILL once
terminationGracePeriodSeconds have passed since the stop began.

The first container is the pod's main one: `id`, `log()`, `exec()` and `pre_stop_result` are its
unless a container is named.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.podrunner.container import RUNC_ROOT, Container, runc
from support.podrunner.network import PodNetwork
from support.podrunner.volumes import Volumes

API_ACCESS = "kube-api-access"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_HOST = "10.96.0.1"  # the `kubernetes` Service's address; the caller forwards it to the API server


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """The first truthy value of `check()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Pod:
    def __init__(
        self,
        deployment: dict[str, Any],
        *,
        config_maps: dict[str, dict[str, str]],
        secrets: dict[str, dict[str, str]] | None = None,
        network: PodNetwork | None = None,
        name: str | None = None,
        service_account: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        """`service_account`: token, ca.crt and namespace for the kubelet's kube-api-access volume
        (mounted into every container unless automountServiceAccountToken is false), with the API
        server at SERVICE_HOST. `hosts`: name → address lines added to /etc/hosts, where the cluster
        DNS would answer for a Service name (the runner has no DNS server)."""
        self.hosts = dict(hosts or {})
        template = deployment["spec"]["template"]
        self.spec = dict(template["spec"])
        specs = [dict(c) for c in template["spec"]["containers"]]
        secrets = dict(secrets or {})
        if service_account is not None and self.spec.get("automountServiceAccountToken", True):
            secrets[API_ACCESS] = service_account
            self.spec["volumes"] = [
                *self.spec.get("volumes", []),
                {"name": API_ACCESS, "secret": {"secretName": API_ACCESS, "defaultMode": 0o644}},
            ]
            for spec in specs:
                spec["volumeMounts"] = [
                    *spec.get("volumeMounts", []),
                    {"name": API_ACCESS, "mountPath": TOKEN_DIR, "readOnly": True},
                ]
                spec["env"] = [
                    *spec.get("env", []),
                    {"name": "KUBERNETES_SERVICE_HOST", "value": SERVICE_HOST},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": "443"},
                ]
        self.spec["containers"] = specs
        self.meta = {
            "name": name or f"{deployment['metadata']['name']}-{os.getpid()}",
            "namespace": deployment["metadata"].get("namespace", "default"),
            "annotations": template["metadata"].get("annotations", {}),
        }
        self.network = network or PodNetwork()
        self.dir = Path(tempfile.mkdtemp(prefix="mailrelay-pod-"))
        self.volumes = Volumes(self.dir / "volumes", self.spec, config_maps, secrets)
        self.containers = [Container(self, spec, index) for index, spec in enumerate(specs)]
        self.main = self.containers[0]
        self.container = self.main.spec  # the main container's spec, as the kubelet was given it
        self.probe_log: list[tuple[str, int, str]] = []  # (probe, exit status, output); others' as name/probe
        # Host files mounted read-only into every container beyond the kubelet's (a test's CA bundle), by path.
        self.node_files: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the main container, and the pod as a whole -----------------------------------------------
    @property
    def id(self) -> str:
        return self.main.id

    @property
    def log_path(self) -> Path:
        return self.main.log_path

    @property
    def pre_stop_result(self) -> subprocess.CompletedProcess[str] | None:
        return self.main.pre_stop_result

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.containers)

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)

    def named(self, container: str | None) -> Container:
        return self.main if container is None else next(c for c in self.containers if c.name == container)

    def log(self, container: str | None = None) -> str:
        return self.named(container).log()

    def status(self, container: str | None = None) -> str:
        return self.named(container).status()

    def exec(
        self, *command: str, timeout: float = 60, stdin: str | None = None, container: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl exec [-c container]`: a process in the container with its user, capabilities and environment."""
        return self.named(container).exec(*command, timeout=timeout, stdin=stdin)

    # --- lifecycle -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if not self.network.path.exists():
            self.network.create()
        self._etc = self._etc_files()
        self._volumes = self.volumes.setup()

    def start(self) -> Pod:
        self._prepare()
        for container in self.containers:
            container.run()
            if "readinessProbe" not in container.spec:  # no probe: ready once started
                threading.Thread(target=self._ready_when_started, args=(container,), daemon=True).start()
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container.spec:
                    thread = threading.Thread(target=self._probe_loop, args=(container, kind), daemon=True)
                    thread.start()
                    self._threads.append(thread)
        return self

    def _ready_when_started(self, container: Container) -> None:
        while not self._stopping.is_set():
            if container.started.wait(0.2):
                container.ready = True
                if self._stopping.wait(0.2):
                    return

    def _etc_files(self) -> dict[str, Path]:
        """/etc/hosts from the kubelet, /etc/hostname and /etc/resolv.conf from the sandbox."""
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        name, ns = self.meta["name"], self.meta["namespace"]
        files = {
            "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{self.network.pod_ip}\t{name}\n" + "".join(f"{ip}\t{host}\n" for host, ip in self.hosts.items()),
            "hostname": f"{name}\n",
            "resolv.conf": f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {self.network.gateway}\noptions ndots:5\n",
        }
        for file, text in files.items():
            (etc / file).write_text(text)
        return {**{f"/etc/{file}": etc / file for file in files}, **self.node_files}

    def run_once(self, timeout: float = 120, **override: Any) -> subprocess.CompletedProcess[str]:
        """Run the main container to its end in the foreground (a Job's way), `override` replacing
        container fields such as args; returns its exit status and output."""
        self._prepare()
        bundle = self.main._bundle({**self.main.spec, **override})
        try:
            return subprocess.run(
                ["runc", "--root", RUNC_ROOT, "run", "--bundle", str(bundle), self.main.id],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            runc("delete", "--force", self.main.id)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            for container in self.containers:
                if container.status() != "running":
                    raise AssertionError(f"container {container.name} exited before it was ready:\n{container.log()}")
            time.sleep(0.2)
        waiting = [c.name for c in self.containers if not c.ready]
        assert self.ready, f"{waiting} not ready within {timeout}s; probes: {self.probe_log[-3:]}\n" + "\n".join(
            f"--- {c.name}:\n{c.log()[-3000:]}" for c in self.containers
        )

    # --- probes ----------------------------------------------------------------------------------
    def _probe_loop(self, container: Container, kind: str) -> None:
        probe = container.spec[kind]
        label = kind if container is self.main else f"{container.name}/{kind}"
        period = probe.get("periodSeconds", 10)
        failures = successes = 0
        if self._stopping.wait(probe.get("initialDelaySeconds", 0)):
            return
        while not self._stopping.is_set():
            if kind == "startupProbe" and container.started.is_set():
                if self._stopping.wait(0.2):  # passed: wait for a restart to probe again
                    return
                continue
            if kind != "startupProbe" and not container.started.wait(0.2):
                continue  # the kubelet runs neither liveness nor readiness before startup passed
            with self._lock:
                status, output = container.run_probe(probe)
            self.probe_log.append((label, status, output))
            if status == 0:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if kind == "startupProbe" and status == 0:
                container.started.set()
                failures = 0
                continue
            if kind == "readinessProbe":
                if successes >= probe.get("successThreshold", 1):
                    container.ready = True
                elif failures >= probe.get("failureThreshold", 3):
                    container.ready = False
            elif failures >= probe.get("failureThreshold", 3):
                with self._lock:
                    if self._stopping.is_set():
                        return
                    container.restart(f"{kind.removesuffix('Probe')} probe failed {failures} times")
                failures = 0
            if self._stopping.wait(period):
                return

    # --- stopping --------------------------------------------------------------------------------
    def stop(self) -> float:
        """Stop the pod: probes end, every container goes the kubelet's way at once, then volumes and network."""
        if self._stopping.is_set():
            return 0.0
        self._stopping.set()
        started = time.monotonic()
        with self._lock:
            running = [c for c in self.containers if c.id]
            threads = [threading.Thread(target=c.kill, args=("pod deleted", started)) for c in running]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        took = time.monotonic() - started if running else 0.0
        self.volumes.teardown()
        self.network.delete()
        if not os.environ.get("MAILRELAY_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return took
