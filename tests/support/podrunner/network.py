"""A pod's network: its own namespace, joined to the host by a veth pair on a private /24.

The host side plays the node: the pod's default route points at it, and test clients and the
smarthost sink use addresses on it. Names and the subnet are unique per run, so several runs can
share a machine; nothing is routed beyond the pair.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import socket
import subprocess
import threading
from pathlib import Path

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no interface on the host uses yet, derived from the pid."""
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    start = os.getpid() * 7 + next(_counter) * 131
    for offset in range(4096):
        n = (start + offset) % (200 * 256)
        subnet = ipaddress.IPv4Network(f"10.{40 + n // 256}.{n % 256}.0/24")
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError("no free private /24 for a pod network")


class PodNetwork:
    def __init__(self) -> None:
        tag = f"{os.getpid()}x{next(_counter)}"
        self.name = f"mrpod-{tag}"
        self.host_if, self.pod_if = f"mrh{tag}"[:15], f"mrp{tag}"[:15]
        self.subnet = _free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.pod_ip = str(self.subnet.network_address + 2)
        self.path = Path("/var/run/netns") / self.name

    def address(self, host_part: int) -> str:
        """Another address in the subnet, on the host side (a client or a server of the test)."""
        return str(self.subnet.network_address + host_part)

    def create(self) -> PodNetwork:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.pod_if)
            _ip("link", "set", self.pod_if, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            inside = ("netns", "exec", self.name, "ip")
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "link", "set", self.pod_if, "name", "eth0")
            _ip(*inside, "addr", "add", f"{self.pod_ip}/24", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "route", "add", "default", "via", self.gateway)
        except subprocess.CalledProcessError:
            self.delete()
            raise
        return self

    def add_host_address(self, host_part: int) -> str:
        """Put another address on the host side, e.g. a client inside or outside allowedNetworks."""
        address = self.address(host_part)
        _ip("addr", "add", f"{address}/32", "dev", self.host_if)
        return address

    def add_address(self, address: str) -> None:
        """An address outside the subnet on the host side, e.g. a Service IP the test forwards."""
        _ip("addr", "add", f"{address}/32", "dev", self.host_if)

    def delete(self) -> None:
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)


class Forwarder:
    """A TCP relay from an address on the host side to a host-local service (the API server on loopback)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
