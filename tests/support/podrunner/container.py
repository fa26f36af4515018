"""One container of a pod under runc: its OCI bundle, log, exec, probes and the kubelet's stop."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support.podrunner import images, oci

if TYPE_CHECKING:
    from support.podrunner.pod import Pod

RUNC_ROOT = "/run/mailrelay-operator/runc"


def runc(*args: str, timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runc", "--root", RUNC_ROOT, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


class Container:
    """One container of the pod: its runc id (new at each restart), log, probes and restarts."""

    def __init__(self, pod: Pod, spec: dict[str, Any], index: int) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.index = index
        self.image_id = images.built_images()[spec["image"]]
        self.log_path = pod.dir / f"{self.name}.log"
        self.id = ""
        self.ready = False
        self.started = threading.Event()  # the startupProbe passed (at once without one)
        self.restarts = 0
        self.pre_stop_result: subprocess.CompletedProcess[str] | None = None  # of the last stop
        self._generation = 0

    def _bundle(self, container: dict[str, Any]) -> Path:
        self._generation += 1
        self.id = f"mr{os.getpid()}-{self.pod.network.name.rsplit('-', 1)[1]}-{self.index}-{self._generation}"
        bundle = self.pod.dir / f"bundle-{self.name}-{self._generation}"
        bundle.mkdir()
        config = oci.runtime_config(
            pod={"metadata": self.pod.meta, "spec": self.pod.spec},
            container=container,
            image=images.image_config(self.image_id),
            rootfs=images.rootfs(self.image_id),
            volumes=self.pod._volumes,
            etc_files=self.pod._etc,
            netns=self.pod.network.path,
        )
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def run(self) -> None:
        bundle = self._bundle(self.spec)
        read, write = os.pipe()  # the container's stdout and stderr, as containerd's shim collects them
        try:
            result = subprocess.run(
                ["runc", "--root", RUNC_ROOT, "run", "-d", "--bundle", str(bundle), self.id],
                stdin=subprocess.DEVNULL,
                stdout=write,
                stderr=write,
                check=False,
                timeout=60,
            )
        finally:
            os.close(write)
        threading.Thread(target=self._collect_log, args=(read,), daemon=True).start()
        if result.returncode != 0:
            time.sleep(0.2)
            raise RuntimeError(f"runc run of container {self.name} failed ({result.returncode}):\n{self.log()}")
        if "startupProbe" not in self.spec:
            self.started.set()

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

    def exec(self, *command: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", RUNC_ROOT, "exec", self.id, *command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_probe(self, probe: dict[str, Any]) -> tuple[int, str]:
        if "httpGet" in probe:  # from the node, to the pod's address, as the kubelet does
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in self.spec.get("ports", []) if p.get("name") == port)
            url = f"http://{self.pod.network.pod_ip}:{port}{get.get('path', '/')}"
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

    def kill(self, reason: str, started: float) -> None:
        """preStop, SIGTERM, SIGKILL at the grace period's end (counted from `started`)."""
        grace = self.pod.spec.get("terminationGracePeriodSeconds", 30)
        with self.log_path.open("a") as log:
            log.write(f"podrunner: stopping container {self.id}: {reason}\n")
        pre_stop = self.spec.get("lifecycle", {}).get("preStop", {}).get("exec")
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

    def restart(self, reason: str) -> None:
        self.ready = False
        self.started.clear()
        self.kill(reason, time.monotonic())
        self.run()
        self.restarts += 1
