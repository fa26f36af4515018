"""Helpers for the node's tests: waiting with kubectl, running a command in a pod, reading the sink."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node import NodeCluster


def ready(node: NodeCluster, namespace: str, what: str, timeout: int = 180) -> None:
    done = node.kubectl("wait", "-n", namespace, "--for=condition=Ready", what, f"--timeout={timeout}s", check=False)
    if done.returncode:
        described = node.kubectl("describe", "-n", namespace, what, check=False).stdout[-3000:]
        raise AssertionError(f"{what} not Ready: {done.stderr}\n{described}")


def exec_in(
    node: NodeCluster,
    namespace: str,
    pod: str,
    *command: str,
    check: bool = True,
    input: str | None = None,
    container: str | None = None,
) -> Any:
    """`kubectl exec`, in the pod's first container or the one named. `input` becomes the command's stdin
    inside the pod (an argument of `env`, piped by the pod's shell), not kubectl's: stdin streamed through
    `kubectl exec -i` has arrived short (65 bytes of a message missing, the command still exiting 0), and
    a mail without its Subject is never found at the sink."""
    chosen = ["-c", container] if container else []
    if input is not None:
        command = (
            "env",
            f"MAILRELAY_STDIN={input}",
            "sh",
            "-c",
            'printf "%s" "$MAILRELAY_STDIN" | "$@"',
            "sh",
            *command,
        )
    return node.kubectl("exec", "-q", "-n", namespace, pod, *chosen, "--", *command, check=check)


def sink_messages(node: NodeCluster, namespace: str, pod: str = "sink") -> list[dict[str, Any]]:
    """What the sink pod recorded (image/testing/sink: one JSON line a message)."""
    done = exec_in(node, namespace, pod, "cat", "/var/spool/sink/messages.jsonl", check=False)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def eventually(check: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s (last: {last!r})")
