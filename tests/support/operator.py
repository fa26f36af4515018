"""The one operator process of the tests: `mailrelay-operator` on this machine, with a log file.

`OperatorProcess.deployed` runs a rendered Deployment's container as the kubelet would: the image's
ENTRYPOINT (image/operator/Dockerfile, resolved to this virtualenv's console script), the
container's args with `$(VAR)` expanded, its env with the downward API filled in (its own pod name,
the Deployment's namespace). Only the liveness and metrics ports move to free ones, as every
process here shares this machine's loopback. `OperatorProcess.run` is `mailrelay-operator run`
with the settings the tests shorten, for an API server that is not a shipped install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from support.paths import ROOT
from support.smtp_sink import free_port

# Settings the tests shorten; the operator reads them from its environment.
TEST_SETTINGS = {"MAILRELAY_RESYNC_SECONDS": "2", "MAILRELAY_RETRY_SECONDS": "1", "MAILRELAY_LOG_FORMAT": "plain"}
PORT_ARG = re.compile(r"^--(liveness|metrics)-port=(\d+)$")


def entrypoint() -> list[str]:
    """The operator image's ENTRYPOINT, resolved to this virtualenv's console script."""
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "image/operator/Dockerfile").read_text(), re.M)
    assert match, "image/operator/Dockerfile has no exec-form ENTRYPOINT"
    command = json.loads(match.group(1))
    return [shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0], *command[1:]]


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: known variables are replaced, $$ is a literal $."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def container_env(deployment: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet sets it for a pod of that name."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    fields = {"metadata.namespace": deployment["metadata"]["namespace"], "metadata.name": pod_name}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"no test support for env {var}")
    return env


def deployed_command(
    deployment: dict[str, Any], kubeconfig: Path, pod_name: str, **overrides: str
) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """(command, environment, ports) of the Deployment's container in a pod named `pod_name`.

    The environment is the container's alone (nothing of this machine's MAILRELAY_*, POD_* or KUBE*
    leaks in), then `overrides` and the kubeconfig; the liveness and metrics ports move to free ones."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILRELAY_", "POD_", "KUBE"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(container_env(deployment, pod_name))
    env.update(overrides)
    env["KUBECONFIG"] = str(kubeconfig)
    args = [expand(a, env) for a in container.get("args", [])]
    assert any(a.startswith("--liveness-port=") for a in args), "the manifest's liveness port is gone"
    ports = {m.group(1): free_port() for m in map(PORT_ARG.match, args) if m}
    moved = [PORT_ARG.sub(lambda m: f"--{m.group(1)}-port={ports[m.group(1)]}", a) for a in args]
    return [*entrypoint(), *moved], env, ports


class OperatorProcess:
    """One operator: its command line and environment, a log, the ports it serves on."""

    def __init__(self, command: list[str], env: dict[str, str], ports: dict[str, int] | None = None, *, log: Path):
        self.command, self.env, self.log_path = command, env, log
        self.ports = ports or {}
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def run(cls, kubeconfig: Path, log: Path, *args: str, **env: str) -> OperatorProcess:
        """`mailrelay-operator run <args>` against a kubeconfig; any free port for /metrics unless given."""
        run_args = list(args) or ["--liveness-port", "0"]
        if not any(a.startswith("--metrics-port") for a in run_args):  # several operators run at once here
            run_args = [*run_args, "--metrics-port", "0"]
        environment = {**os.environ, "KUBECONFIG": str(kubeconfig), **TEST_SETTINGS, **env}
        return cls([*entrypoint(), "run", *run_args], environment, log=log)

    @classmethod
    def deployed(
        cls, deployment: dict[str, Any], kubeconfig: Path, log: Path, pod_name: str, **overrides: str
    ) -> OperatorProcess:
        """The Deployment's container as a pod named `pod_name` runs it, its ports moved to free ones."""
        return cls(*deployed_command(deployment, kubeconfig, pod_name, **overrides), log=log)

    def start(self) -> OperatorProcess:
        """Start (or restart, as the kubelet does after an exit) the process."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self) -> None:
        """As the kubelet stops a container: SIGTERM (a frozen process is woken first), then SIGKILL."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        """Its /healthz on the liveness port."""
        return dict(requests.get(f"http://127.0.0.1:{self.ports['liveness']}/healthz", timeout=2).json())
