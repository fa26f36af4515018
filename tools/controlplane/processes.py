"""The child processes of the control plane, the node and the registry.

One way to start a component (its output appended to its own log file, a session of its own, killed with the
process that started it), to stop one (SIGTERM, SIGKILL after 10 s) and to notice one that died, so that
tools/controlplane and tools/node (which builds on it) say the same thing about their processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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
