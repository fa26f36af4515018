"""An OCI runtime config for one container of a pod spec, with containerd's CRI defaults.

Kept out on purpose, because this sandbox cannot apply them: rlimits and cgroup resources (runc
needs CAP_SYS_RESOURCE and a usable cgroup tree for those). Everything else the pod spec says is
applied: the process from image config and container spec, user, capabilities (containerd's default
set, then drop/add), no-new-privileges, read-only root, seccomp, volumes, masked paths.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from support.podrunner.volumes import HostVolume

# containerd's default capabilities for a CRI container (pkg/oci defaults).
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# The default profile of containers-common: the same moby-derived list containerd's RuntimeDefault uses.
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def capabilities(security: dict[str, Any]) -> list[str]:
    caps = security.get("capabilities") or {}
    drop = {f"CAP_{c}" for c in caps.get("drop", [])}
    base = [] if "CAP_ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    return sorted({*base, *(f"CAP_{c}" for c in caps.get("add", []))})


def seccomp(caps: list[str]) -> dict[str, Any]:
    """RuntimeDefault: the moby-format profile turned into the runtime's form for this arch and caps."""
    profile = json.loads(SECCOMP_PROFILE.read_text())
    arch = _GO_ARCH.get(platform.machine(), platform.machine())
    arches = next(
        (
            [m["architecture"], *m.get("subArchitectures", [])]
            for m in profile["archMap"]
            if m["architecture"].endswith(platform.machine().upper())
        ),
        [],
    )
    rules = []
    for rule in profile["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("arches") and arch not in includes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= set(caps):
            continue
        if arch in (excludes.get("arches") or []) or set(excludes.get("caps") or []) & set(caps):
            continue
        out: dict[str, Any] = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        rules.append(out)
    result: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": rules}
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return result


def process_args(container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
    if container.get("command"):
        return [*container["command"], *container.get("args", [])]
    entrypoint = image.get("Entrypoint") or []
    return [*entrypoint, *(container["args"] if "args" in container else image.get("Cmd") or [])]


def environment(container: dict[str, Any], image: dict[str, Any], pod_meta: dict[str, str]) -> list[str]:
    env = {k: v for k, _, v in (item.partition("=") for item in image.get("Env") or [])}
    env["HOSTNAME"] = pod_meta["name"]
    fields = {"metadata.name": pod_meta["name"], "metadata.namespace": pod_meta["namespace"]}
    for item in container.get("env", []):
        if "valueFrom" in item:
            field = item["valueFrom"].get("fieldRef", {}).get("fieldPath")
            if field not in fields:
                raise ValueError(f"env source not supported by the pod runner: {item}")
            env[item["name"]] = fields[field]
        else:
            env[item["name"]] = item.get("value", "")
    return [f"{k}={v}" for k, v in env.items()]


def user(security: dict[str, Any], image: dict[str, Any], rootfs: Path) -> dict[str, Any]:
    """runAsUser/runAsGroup over the image's USER; names resolve in the image's /etc/passwd."""
    name, _, group = (image.get("User") or "0").partition(":")
    passwd = {f[0]: f for f in (line.split(":") for line in _read(rootfs / "etc/passwd")) if len(f) > 3}
    uid = int(name) if name.isdigit() else int(passwd[name][2])
    gid = int(group) if group.isdigit() else int(next((f[3] for f in passwd.values() if f[2] == str(uid)), "0"))
    uid = security.get("runAsUser", uid)
    gid = security.get("runAsGroup", gid)
    if security.get("runAsNonRoot") and uid == 0:
        raise ValueError("runAsNonRoot with a root user: the kubelet refuses to start this container")
    username = next((f[0] for f in passwd.values() if f[2] == str(uid)), None)
    extra = [
        int(f[2])
        for f in (line.split(":") for line in _read(rootfs / "etc/group"))
        if len(f) > 3 and username in f[3].split(",")
    ]
    extra += security.get("supplementalGroups", [])
    return {"uid": uid, "gid": gid, **({"additionalGids": sorted(set(extra))} if extra else {})}


def _read(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _mount(destination: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": options}


def runtime_config(
    *,
    pod: dict[str, Any],
    container: dict[str, Any],
    image: dict[str, Any],
    rootfs: Path,
    volumes: dict[str, HostVolume],
    etc_files: dict[str, Path],
    netns: Path,
) -> dict[str, Any]:
    """config.json for `runc run`: one container of `pod` (a pod template: metadata + spec)."""
    spec = pod["spec"]
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    caps = capabilities(security)
    read_only = bool(security.get("readOnlyRootFilesystem"))
    mounts = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ]
    for destination, path in etc_files.items():
        mounts.append(_mount(destination, "bind", str(path), ["rbind", "rprivate", "ro" if read_only else "rw"]))
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        source = volume.path / mount["subPath"] if mount.get("subPath") else volume.path
        ro = volume.always_read_only or mount.get("readOnly", False)
        mounts.append(_mount(mount["mountPath"], "bind", str(source), ["rbind", "rprivate", "ro" if ro else "rw"]))
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network", "path": str(netns)},
        ],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }
    profile = (security.get("seccompProfile") or {}).get("type", "Unconfined")
    if profile == "RuntimeDefault":
        linux["seccomp"] = seccomp(caps)
    elif profile != "Unconfined":
        raise ValueError(f"seccomp profile {profile} not supported by the pod runner")
    meta = pod["metadata"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": user(security, image, rootfs),
            "args": process_args(container, image),
            "env": environment(container, image, meta),
            "cwd": container.get("workingDir") or image.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": security.get("allowPrivilegeEscalation", True) is False,
        },
        "root": {"path": str(rootfs), "readonly": read_only},
        "hostname": meta["name"],
        "mounts": mounts,
        "linux": linux,
    }
