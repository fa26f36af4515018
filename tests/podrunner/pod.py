"""One replica of a rendered Deployment, run the way the kubelet runs a pod.

The container runs under `runc run -d` in the pod's network namespace with its stdout and stderr
collected like the container log. Probes run with `runc exec` on their periods: readiness sets
`ready`, liveness failing `failureThreshold` times in a row kills and restarts the container (same
volumes, as restartPolicy Always does). `stop` is the kubelet's: the preStop hook, SIGTERM, and
SIGKILL once terminationGracePeriodSeconds have passed since the stop began.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podrunner import images, oci
from podrunner.network import PodNetwork
from podrunner.volumes import Volumes

RUNC_ROOT = "/run/mailrelay-operator/runc"
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


def runc(*args: str, timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "--root", RUNC_ROOT, *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


class Pod:
    def __init__(self, deployment: dict[str, Any], *, config_maps: dict[str, dict[str, str]],
                 secrets: dict[str, dict[str, str]] | None = None, network: PodNetwork | None = None,
                 name: str | None = None, service_account: dict[str, str] | None = None) -> None:
        """`service_account`: token, ca.crt and namespace for the kubelet's kube-api-access volume
        (mounted unless automountServiceAccountToken is false), with the API server at SERVICE_HOST."""
        template = deployment["spec"]["template"]
        [container] = template["spec"]["containers"]
        self.spec = dict(template["spec"])
        self.container = dict(container)
        secrets = dict(secrets or {})
        if service_account is not None and self.spec.get("automountServiceAccountToken", True):
            secrets[API_ACCESS] = service_account
            self.spec["volumes"] = [*self.spec.get("volumes", []),
                                    {"name": API_ACCESS, "secret": {"secretName": API_ACCESS, "defaultMode": 0o644}}]
            self.container["volumeMounts"] = [*self.container.get("volumeMounts", []),
                                              {"name": API_ACCESS, "mountPath": TOKEN_DIR, "readOnly": True}]
            self.container["env"] = [*self.container.get("env", []),
                                     {"name": "KUBERNETES_SERVICE_HOST", "value": SERVICE_HOST},
                                     {"name": "KUBERNETES_SERVICE_PORT", "value": "443"}]
        self.meta = {"name": name or f"{deployment['metadata']['name']}-{os.getpid()}",
                     "namespace": deployment["metadata"].get("namespace", "default"),
                     "annotations": template["metadata"].get("annotations", {})}
        self.image_id = images.built_images()[self.container["image"]]
        self.network = network or PodNetwork()
        self.dir = Path(tempfile.mkdtemp(prefix="mailrelay-pod-"))
        self.volumes = Volumes(self.dir / "volumes", self.spec, config_maps, secrets)
        self.log_path = self.dir / "container.log"
        self.ready = False
        self.restarts = 0
        self.probe_log: list[tuple[str, int, str]] = []  # (probe, exit status, output)
        self.pre_stop_result: subprocess.CompletedProcess[str] | None = None  # of the last stop
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._generation = 0
        self.id = ""

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Pod:
        if not self.network.path.exists():
            self.network.create()
        self._etc = self._etc_files()
        self._volumes = self.volumes.setup()
        self._run_container()
        for kind in ("readinessProbe", "livenessProbe"):
            if kind in self.container:
                thread = threading.Thread(target=self._probe_loop, args=(kind,), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def _etc_files(self) -> dict[str, Path]:
        """/etc/hosts from the kubelet, /etc/hostname and /etc/resolv.conf from the sandbox."""
        etc = self.dir / "etc"
        etc.mkdir()
        name, ns = self.meta["name"], self.meta["namespace"]
        files = {"hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                          f"{self.network.pod_ip}\t{name}\n",
                 "hostname": f"{name}\n",
                 "resolv.conf": f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
                                f"nameserver {self.network.gateway}\noptions ndots:5\n"}
        for file, text in files.items():
            (etc / file).write_text(text)
        return {f"/etc/{file}": etc / file for file in files}

    def _bundle(self, container: dict[str, Any]) -> Path:
        self._generation += 1
        self.id = f"mr{os.getpid()}-{self.network.name.rsplit('-', 1)[1]}-{self._generation}"
        bundle = self.dir / f"bundle-{self._generation}"
        bundle.mkdir()
        config = oci.runtime_config(pod={"metadata": self.meta, "spec": self.spec}, container=container,
                                    image=images.image_config(self.image_id), rootfs=images.rootfs(self.image_id),
                                    volumes=self._volumes, etc_files=self._etc, netns=self.network.path)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def run_once(self, timeout: float = 120, **override: Any) -> subprocess.CompletedProcess[str]:
        """Run the container to its end in the foreground (a Job's way), `override` replacing
        container fields such as args; returns its exit status and output."""
        if not self.network.path.exists():
            self.network.create()
        self._etc = self._etc_files()
        self._volumes = self.volumes.setup()
        bundle = self._bundle({**self.container, **override})
        try:
            return subprocess.run(["runc", "--root", RUNC_ROOT, "run", "--bundle", str(bundle), self.id],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        finally:
            runc("delete", "--force", self.id)

    def _run_container(self) -> None:
        bundle = self._bundle(self.container)
        read, write = os.pipe()  # the container's stdout and stderr, as containerd's shim collects them
        try:
            result = subprocess.run(["runc", "--root", RUNC_ROOT, "run", "-d", "--bundle", str(bundle), self.id],
                                    stdin=subprocess.DEVNULL, stdout=write, stderr=write, check=False,
                                    timeout=60)
        finally:
            os.close(write)
        threading.Thread(target=self._collect_log, args=(read,), daemon=True).start()
        if result.returncode != 0:
            time.sleep(0.2)
            raise RuntimeError(f"runc run failed ({result.returncode}):\n{self.log()}")

    def _collect_log(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe, self.log_path.open("ab") as log:
            for line in pipe:
                log.write(line)
                log.flush()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> str:
        """runc's view of the current container: running, stopped, or gone."""
        result = runc("state", self.id)
        return json.loads(result.stdout)["status"] if result.returncode == 0 else "gone"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            if self.status() != "running":
                raise AssertionError(f"the container exited before it was ready:\n{self.log()}")
            time.sleep(0.2)
        assert self.ready, f"not ready within {timeout}s; probes: {self.probe_log[-3:]}\n{self.log()[-3000:]}"

    # --- exec and probes -------------------------------------------------------------------------
    def exec(self, *command: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`kubectl exec`: a process in the container with its user, capabilities and environment."""
        return subprocess.run(["runc", "--root", RUNC_ROOT, "exec", self.id, *command], input=stdin,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def _run_probe(self, probe: dict[str, Any]) -> tuple[int, str]:
        if "httpGet" in probe:  # from the node, to the pod's address, as the kubelet does
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in self.container.get("ports", []) if p.get("name") == port)
            url = f"http://{self.network.pod_ip}:{port}{get.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)) as answer:
                    return (0 if 200 <= answer.status < 400 else 1), str(answer.status)
            except OSError as error:
                return 1, str(error)
        try:
            result = self.exec(*probe["exec"]["command"], timeout=probe.get("timeoutSeconds", 1))
        except subprocess.TimeoutExpired:
            return -1, "probe timed out"
        return result.returncode, result.stdout + result.stderr

    def _probe_loop(self, kind: str) -> None:
        probe = self.container[kind]
        period = probe.get("periodSeconds", 10)
        failures = successes = 0
        if self._stopping.wait(probe.get("initialDelaySeconds", 0)):
            return
        while not self._stopping.is_set():
            with self._lock:
                status, output = self._run_probe(probe)
            self.probe_log.append((kind, status, output))
            if status == 0:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if kind == "readinessProbe":
                if successes >= probe.get("successThreshold", 1):
                    self.ready = True
                elif failures >= probe.get("failureThreshold", 3):
                    self.ready = False
            elif failures >= probe.get("failureThreshold", 3):
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.ready = False
                    self._kill_container(f"liveness probe failed {failures} times")
                    self._run_container()
                    self.restarts += 1
                failures = 0
            if self._stopping.wait(period):
                return

    # --- stopping --------------------------------------------------------------------------------
    def _kill_container(self, reason: str) -> float:
        """preStop, SIGTERM, SIGKILL at the grace period's end; returns the seconds it took."""
        started = time.monotonic()
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        with self.log_path.open("a") as log:
            log.write(f"podrunner: stopping container {self.id}: {reason}\n")
        pre_stop = self.container.get("lifecycle", {}).get("preStop", {}).get("exec")
        if pre_stop and self.status() == "running":
            try:
                self.pre_stop_result = self.exec(*pre_stop["command"], timeout=grace)
            except subprocess.TimeoutExpired:
                self.pre_stop_result = None
        runc("kill", self.id, "TERM")
        while self.status() == "running" and time.monotonic() - started < grace:
            time.sleep(0.1)
        if self.status() == "running":
            runc("kill", self.id, "KILL")  # PID 1 of the pid namespace: everything goes with it
            while self.status() == "running":
                time.sleep(0.1)
        runc("delete", "--force", self.id)
        return time.monotonic() - started

    def stop(self) -> float:
        """Stop the pod: probes end, the container goes the kubelet's way, then volumes and network."""
        if self._stopping.is_set():
            return 0.0
        self._stopping.set()
        with self._lock:
            took = self._kill_container("pod deleted") if self.id else 0.0
        self.volumes.teardown()
        self.network.delete()
        if not os.environ.get("MAILRELAY_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return took
