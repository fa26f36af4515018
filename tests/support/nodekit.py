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
    """`kubectl exec` (with -i when there is input), in the pod's first container or the one named."""
    chosen = ["-c", container] if container else []
    return node.kubectl(
        "exec",
        "-i" if input is not None else "-q",
        "-n",
        namespace,
        pod,
        *chosen,
        "--",
        *command,
        input=input,
        check=check,
    )


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
