"""A node's own network namespace, its veth to the host, and the slot that makes both unique on this machine.

Several runs (developers, helpers, CI) share one machine, so a node takes a numbered slot, held with a file
lock for its life: slot N owns the namespace `mrnode-N`, the veth `mrnh-N` (host side, 10.250.N.1/30; the
node's `eth0` is 10.250.N.2) and the pod range 10.251.N.0/24 behind the bridge `mrbr-N` inside the
namespace. containerd, the kubelet, kube-proxy and the firewall run in that namespace, so their iptables,
ipsets, ports and sysctls are theirs alone; the host gets only the veth and a route to the pod range.
Nothing is sent anywhere but to these addresses and loopback. A slot whose lock is free may hold leftovers
of a run that crashed: the new owner removes them first (cleanup.py).
"""

from __future__ import annotations

import fcntl
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCKS = Path("/run/mailrelay-operator/node")
SLOTS = range(1, 250)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_interface(word).network
        for line in ip("-4", "-o", "addr").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]


@dataclass
class Slot:
    number: int
    lock: IO[str]

    @property
    def netns(self) -> str:
        return f"mrnode-{self.number}"

    @property
    def host_if(self) -> str:
        return f"mrnh-{self.number}"

    @property
    def bridge(self) -> str:
        return f"mrbr-{self.number}"

    @property
    def host_ip(self) -> str:
        """The host's end of the veth: where the apiserver and the registry listen for this node."""
        return f"10.250.{self.number}.1"

    @property
    def node_ip(self) -> str:
        """The node's InternalIP, its `eth0` inside the namespace."""
        return f"10.250.{self.number}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.251.{self.number}.0/24"

    @property
    def cgroup(self) -> str:
        """The cgroup (in every v1 hierarchy) that the node's pods are created under."""
        return f"mailrelay-node-{self.number}"

    @property
    def run_dir(self) -> Path:
        """Sockets and runtime state; short, as unix socket paths are limited to 108 bytes."""
        return Path(f"/run/mailrelay-node/{self.number}")

    def release(self) -> None:
        self.lock.close()


def take_slot() -> Slot:
    """Lock the first free slot whose addresses no interface of this machine uses."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    used = _host_networks()
    for number in SLOTS:
        nets = [ipaddress.IPv4Network(f"10.250.{number}.0/30"), ipaddress.IPv4Network(f"10.251.{number}.0/24")]
        lock = (LOCKS / f"slot-{number}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        mine = Slot(number, lock)
        if any(net.overlaps(u) for net in nets for u in used) and not _is_ours(mine):
            lock.close()
            continue
        return mine
    raise RuntimeError("no free node slot (10.250.N.0/30 and 10.251.N.0/24 all taken)")


def _is_ours(slot: Slot) -> bool:
    """A leftover veth of a crashed run of ours (which cleanup removes) rather than someone else's network."""
    return ip("link", "show", slot.host_if, check=False).returncode == 0


def create(slot: Slot) -> None:
    """The namespace, the veth pair and the routes; forwarding on inside (the node routes for its pods)."""
    ip("netns", "add", slot.netns)
    peer = f"mrnp-{slot.number}"
    ip("link", "add", slot.host_if, "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", slot.netns)
    ip("addr", "add", f"{slot.host_ip}/30", "dev", slot.host_if)
    ip("link", "set", slot.host_if, "up")
    inside = ("-n", slot.netns)
    ip(*inside, "link", "set", "lo", "up")
    ip(*inside, "link", "set", peer, "name", "eth0")
    ip(*inside, "addr", "add", f"{slot.node_ip}/30", "dev", "eth0")
    ip(*inside, "link", "set", "eth0", "up")
    ip(*inside, "route", "add", "default", "via", slot.host_ip)
    # The host reaches pod addresses through the node, as a cluster's nodes reach each other's pods.
    ip("route", "add", slot.pod_cidr, "via", slot.node_ip, "dev", slot.host_if)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
    ):
        subprocess.run(
            ["ip", "netns", "exec", slot.netns, "sysctl", "-qw", f"{key}={value}"],
            check=True,
            capture_output=True,
            timeout=30,
        )


def delete(slot: Slot) -> None:
    """Remove the veth (its route goes with it) and the namespace; missing pieces are fine."""
    ip("link", "del", slot.host_if, check=False)
    ip("netns", "del", slot.netns, check=False)


def in_netns(slot: Slot, argv: list[str]) -> list[str]:
    """argv run in the node's network namespace only: nsenter keeps the host's mount namespace, so the
    kubelet's volume mounts are seen by containerd and runc (`ip netns exec` would give each its own)."""
    return ["nsenter", f"--net=/var/run/netns/{slot.netns}", "--", *argv]
