"""The child processes of the control plane, the node and the registry.

One way to start a component (its output appended to its own log file, a session of its own, killed with the
process that started it), to stop one (SIGTERM, SIGKILL after 10 s) and to notice one that died, so that
tools/controlplane and tools/node (which builds on it) say the same thing about their processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import socket
import subprocess
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on, below the kernel's ephemeral range. A port from bind(0) comes from that
    range, and between its close and the caller's own bind any outgoing connection (an apiserver's to
    etcd, a test's to a relay) may take it as its source port: "address already in use"."""
    low = _ephemeral_low()
    for _ in range(500):
        port = random.randint(PORTS_FROM, low - 1)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {PORTS_FROM} to {low - 1} on {host}")


PORTS_FROM = 10000


def _ephemeral_low() -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def spawn(
    argv: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None, tied: bool = True
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log`; `tied`: killed when its parent dies."""
    with log.open("ab") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            env=env,
            preexec_fn=die_with_parent if tied else None,
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Processes:
    """Named components started in order, each with its log `<logs>/<name>.log`, stopped in reverse order."""

    def __init__(self, logs: Path, cwd: Path) -> None:
        self.logs, self.cwd = logs, cwd
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> None:
        self.running.append((name, spawn(argv, self.logs / f"{name}.log", cwd=self.cwd)))

    def stop(self) -> None:
        while self.running:
            stop(self.running.pop()[1])

    def check_running(self) -> None:
        """Raise if a component died: a test failure then names it instead of timing out."""
        for name, process in self.running:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.logs / (name + '.log')}")

    def pids(self) -> dict[str, int]:
        """Component name -> process id, for the components still running."""
        return {name: process.pid for name, process in self.running if process.poll() is None}


def die_with_parent() -> None:
    """Linux: the component is killed when the process that started it dies without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
