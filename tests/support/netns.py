"""A client in its own network namespace, wired to this one by a veth pair on a private /30.

Addresses matter to a closed relay, and loopback aliases all share one host: a namespace is a
client on another machine as far as Postfix can tell. Names carry the pid and a counter, so
parallel test runs on one machine never collide; everything is removed on exit.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_COUNTER = itertools.count()

# Speaks raw SMTP (no library fixing line ends for us): sends each chunk, then collects replies.
_CLIENT = r"""
import json, socket, sys, time
host, port, chunks = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
replies = []
sock = socket.create_connection((host, port), timeout=10)
def read(wait):
    sock.settimeout(wait)
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            if data.endswith(b"\r\n") and wait < 1:
                break
    except socket.timeout:
        pass
    return data.decode(errors="replace")
replies.append(read(0.5))
for chunk in chunks:
    try:
        sock.sendall(chunk.encode("latin-1"))
    except OSError as exc:
        replies.append(f"send failed: {exc}")
        break
    replies.append(read(1.5))
print(json.dumps(replies))
"""


@dataclass
class Namespace:
    name: str
    host_address: str  # this side of the veth: where Postfix listens
    client_address: str  # the client's address inside the namespace

    def smtp(self, port: int, chunks: list[str]) -> list[str]:
        """Send raw SMTP chunks from inside the namespace; the replies read after each one."""
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.name,
                sys.executable,
                "-c",
                _CLIENT,
                self.host_address,
                str(port),
                json.dumps(chunks),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        replies: list[str] = json.loads(result.stdout)
        return replies


def problem() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def client_namespace() -> Iterator[Namespace]:
    index = next(_COUNTER)
    pid = os.getpid()
    tag = f"{pid % 100000}x{index}"
    name, host_if, peer_if = f"mrsec{tag}", f"mrh{tag}", f"mrp{tag}"
    # 10.254.0.0/16 carved into /30s by pid and counter: a private range only these tests use.
    block = ((pid * 7 + index) % 16384) * 4
    base = f"10.254.{block // 256}.{block % 256}"
    prefix = base.rsplit(".", 1)[0]
    host_address, client_address = f"{prefix}.{block % 256 + 1}", f"{prefix}.{block % 256 + 2}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", name)
        _ip("addr", "add", f"{host_address}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{client_address}/30", "dev", peer_if)
        _ip("-n", name, "link", "set", peer_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, host_address, client_address)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def codes(replies: list[Any]) -> list[str]:
    """The three-digit codes of every reply line, in order."""
    return [line[:3] for reply in replies for line in str(reply).splitlines() if line[:3].isdigit()]
