"""Remove everything a node of one slot left behind: processes, mounts, cgroups, the namespace, its files.

Used on stop, and by the next owner of a slot whose previous run crashed (its lock was freed by the kernel
but its containerd shims, container processes, mounts and cgroups may still be there). Everything of a slot
is found by where it lives, never by a process name: processes in the slot's network namespace or its
cgroups, mounts under its folders, the cgroup `mailrelay-node-N` in each hierarchy.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import time
from pathlib import Path

from .network import Slot, delete

CGROUP_ROOT = Path("/sys/fs/cgroup")
MNT_DETACH = 2


def data_dir(slot: Slot) -> Path:
    """containerd's and the kubelet's root folders (image snapshots, pod volumes), wiped on start and stop."""
    return Path(f"/var/lib/mailrelay-node/{slot.number}")


def _netns_inode(slot: Slot) -> int | None:
    try:
        return os.stat(f"/var/run/netns/{slot.netns}").st_ino
    except OSError:
        return None


def _pids_in_netns(inode: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    pids.append(int(entry.name))
    return pids


def cgroup_dirs(slot: Slot) -> list[Path]:
    """The slot's cgroup in each mounted hierarchy (v1 controllers, the named systemd one, the unified one)."""
    return [hierarchy / slot.cgroup for hierarchy in CGROUP_ROOT.iterdir() if (hierarchy / slot.cgroup).is_dir()]


def _pids_in_cgroups(slot: Slot) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(slot):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def kill_processes(slot: Slot, grace: float = 2) -> None:
    """SIGTERM, then SIGKILL, every process in the slot's namespace or cgroups."""
    inode = _netns_inode(slot)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = set(_pids_in_netns(inode) if inode else []) | _pids_in_cgroups(slot)
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)


def unmount_under(*folders: Path) -> None:
    """Lazily unmount every mount point under the folders, deepest first."""
    prefixes = [str(folder.resolve()) for folder in folders]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(point)
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(set(points), key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)


def remove_cgroups(slot: Slot) -> None:
    for top in cgroup_dirs(slot):
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def clean(slot: Slot) -> None:
    """Everything of the slot, in an order that lets each step succeed: processes, mounts, cgroups, network."""
    kill_processes(slot)
    unmount_under(slot.run_dir, data_dir(slot))
    remove_cgroups(slot)
    delete(slot)
    for folder in (slot.run_dir, data_dir(slot)):
        shutil.rmtree(folder, ignore_errors=True)
