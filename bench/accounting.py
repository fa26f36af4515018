"""What a process tree costs, from the kernel's own accounting rather than from wall-clock throughput.

CPU: a child cgroup (v1 `cpuacct`, else the v2 unified hierarchy) that the processes of one relay are
moved into; its counter includes every process that ever ran in it, also those already exited
(Postfix forks smtpd, cleanup and smtp processes and reaps them). Memory: PSS from
/proc/<pid>/smaps_rollup, which splits shared pages among the processes sharing them, so the sum
over a relay's processes is what that relay adds to the machine.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class AccountingError(RuntimeError):
    """No cgroup hierarchy here lets us create a child group with CPU accounting."""


@dataclass(frozen=True)
class CpuUsage:
    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuUsage) -> CpuUsage:
        return CpuUsage(self.user - other.user, self.system - other.system)


def parse_cpu_stat(text: str) -> CpuUsage:
    """cgroup v2 `cpu.stat` (microseconds)."""
    fields = dict(line.split() for line in text.splitlines() if line.strip())
    return CpuUsage(int(fields["user_usec"]) / 1e6, int(fields["system_usec"]) / 1e6)


def parse_cpuacct(usage_user: str, usage_sys: str) -> CpuUsage:
    """cgroup v1 `cpuacct.usage_user` and `cpuacct.usage_sys` (nanoseconds)."""
    return CpuUsage(int(usage_user) / 1e9, int(usage_sys) / 1e9)


class CpuGroup:
    """A child cgroup named `name`, in the first hierarchy under `roots` where we may create one."""

    def __init__(self, name: str, roots: tuple[Path, ...] = CGROUP_ROOTS) -> None:
        problems = []
        for root in roots:
            v1 = (root / "cpuacct.usage").exists()
            if not v1 and not (root / "cgroup.controllers").exists():
                continue
            try:
                (root / name).mkdir()
            except OSError as exc:
                problems.append(f"{root}: {exc.strerror}")
                continue
            self.path, self.v1 = root / name, v1
            return
        raise AccountingError(
            "cannot create a cgroup for CPU accounting (run as root on Linux with cgroups): "
            + ("; ".join(problems) or f"none of {', '.join(map(str, roots))} exists")
        )

    def usage(self) -> CpuUsage:
        if self.v1:
            return parse_cpuacct(
                (self.path / "cpuacct.usage_user").read_text(), (self.path / "cpuacct.usage_sys").read_text()
            )
        return parse_cpu_stat((self.path / "cpu.stat").read_text())

    def pids(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def add(self, pid: int) -> None:
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # exited meanwhile: nothing left to account
                raise

    def adopt_tree(self, root: int) -> int:
        """Move `root` and all its descendants in (Postfix's master starts its own session, so the tree,
        not the session, is the relay). Repeat until none is left outside: a fork may race a sweep, but
        a child forked after its parent moved is born inside. Returns how many processes are inside."""
        for _ in range(50):
            inside = set(self.pids())
            outside = [pid for pid in descendants(root) if pid not in inside]
            if not outside:
                return len(inside)
            for pid in outside:
                self.add(pid)
        raise AccountingError(f"processes under {root} keep appearing outside {self.path}")

    def close(self, timeout: float = 10.0) -> None:
        """Remove the group once its processes are gone."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def parse_stat(text: str) -> dict[str, int]:
    """The fields of /proc/<pid>/stat that matter here (the command name may contain spaces and parens)."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): session is field 6, utime..cstime fields 14..17.
    return {
        "ppid": int(rest[1]),
        "session": int(rest[3]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "cutime": int(rest[13]),
        "cstime": int(rest[14]),
    }


def parent_map(proc: Path = Path("/proc")) -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = parse_stat((entry / "stat").read_text())["ppid"]
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
    return parents


def descendants(root: int, proc: Path = Path("/proc")) -> list[int]:
    """`root` (if alive) and every process below it."""
    children: dict[int, list[int]] = {}
    parents = parent_map(proc)
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """CPU of one process and its reaped children (what a long-running server such as etcd consumed)."""
    stat = parse_stat((proc / str(pid) / "stat").read_text())
    return (stat["utime"] + stat["stime"] + stat["cutime"] + stat["cstime"]) / CLOCK_TICKS


def own_cpu(pids: list[int], proc: Path = Path("/proc")) -> dict[int, tuple[str, float]]:
    """pid -> (command name, its own CPU seconds, not its reaped children's) for the living ones."""
    found = {}
    for pid in pids:
        try:
            text = (proc / str(pid) / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        stat = parse_stat(text)
        found[pid] = (text[text.index("(") + 1 : text.rindex(")")], (stat["utime"] + stat["stime"]) / CLOCK_TICKS)
    return found


def cpu_by_command(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], total: float
) -> dict[str, float]:
    """CPU seconds between two `own_cpu` snapshots by command name; what processes that exited in between
    used (the group's total minus the living ones') is listed as "(exited)"."""
    result: dict[str, float] = {}
    for pid, (command, seconds) in after.items():
        result[command] = result.get(command, 0.0) + seconds - before.get(pid, (command, 0.0))[1]
    result["(exited)"] = max(0.0, total - sum(result.values()))
    return dict(sorted(result.items(), key=lambda kv: -kv[1]))


def parse_pss_kb(smaps_rollup: str) -> int:
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise ValueError("no Pss line in smaps_rollup")


def pss_mb(pids: list[int], proc: Path = Path("/proc")) -> float:
    """Summed PSS of `pids` in MiB; a process that exited meanwhile counts as 0."""
    total = 0
    for pid in pids:
        try:
            total += parse_pss_kb((proc / str(pid) / "smaps_rollup").read_text())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # exited, or a zombie (no memory left to count)
    return total / 1024


def rss_mb(pid: int, proc: Path = Path("/proc")) -> float:
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")
