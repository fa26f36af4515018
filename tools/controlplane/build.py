"""Build the pinned control-plane binaries from Go modules, once, into a cache folder outside the repo.

The three Go modules beside this file (kubernetes/, etcd/, kwok/) pin every version through their go.mod
and go.sum. The cache folder is named after a hash of those files, the Go version and the build flags, so
a changed pin builds anew and an unchanged one is reused (a second `make test` builds nothing).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("kubernetes", "etcd", "kwok")
# module folder -> (module whose version is reported, main packages built from it)
PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "kubernetes": (
        "k8s.io/kubernetes",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
        ),
    ),
    "etcd": ("go.etcd.io/etcd/server/v3", ("go.etcd.io/etcd/server/v3",)),
    "kwok": ("sigs.k8s.io/kwok", ("sigs.k8s.io/kwok/cmd/kwok",)),
}
# Built from go.etcd.io/etcd/server/v3, whose main package would otherwise be named `v3`.
OUTPUT_NAMES = {"go.etcd.io/etcd/server/v3": "etcd"}
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
DEFAULT_CACHE = Path("/var/cache/mailrelay-operator")
GO_FALLBACK = Path("/usr/local/go/bin/go")
# How the binaries are built; part of the cache key, so changing it rebuilds.
RECIPE = ("-trimpath", "-ldflags=-s -w", "CGO_ENABLED=0", "kube version stamped")


# kwok needs Stage objects to act as a kubelet; its module ships the "fast" set (nodes Ready with lease
# heartbeats, pods Running and Ready at once), which kwokctl uses by default.
KWOK_STAGES = "kwok-stages.yaml"
KWOK_STAGE_SET = "kustomize/stage/fast"


class BuildError(RuntimeError):
    """The binaries cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the built commands, and the module versions they were built from."""

    folder: Path
    versions: dict[str, str]

    def path(self, name: str) -> str:
        return str(self.folder / "bin" / name)


def find_go() -> str:
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if not go:
        raise BuildError(
            "Go is not installed (no `go` on PATH, nor /usr/local/go/bin/go); the control plane "
            "for the tests and `make cluster` is built from Go modules: install Go 1.26 or newer"
        )
    return go


def _run(go: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        text = done.stderr.strip()[-3000:]
        hint = ""
        if any(
            s in text
            for s in (
                "dial tcp",
                "proxy",
                "no such host",
                "connection refused",
                "i/o timeout",
                "403 Forbidden",
                "404 Not Found",
                "GOPROXY",
                "lookup ",
            )
        ):
            proxy = env.get("GOPROXY") or _goenv(go, "GOPROXY")
            hint = (
                f"\nthe Go module proxy could not be reached (GOPROXY={proxy}); "
                "the control plane is built from the modules it serves"
            )
        raise BuildError(f"`go {' '.join(args)}` failed in {cwd.name}/:\n{text}{hint}")
    return done.stdout


def _goenv(go: str, name: str) -> str:
    return subprocess.run([go, "env", name], capture_output=True, text=True, check=False).stdout.strip()


def _go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def _kube_version_flags(kube_version: str) -> list[str]:
    """What Kubernetes' own build stamps into component-base, so /version and kubectl report the release."""
    major, minor = kube_version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return [
        f"-X {pkg}.gitVersion={kube_version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
    ]


def _pinned_versions() -> dict[str, str]:
    """Each module's pinned version, read from its go.mod `require` line (no Go needed)."""
    versions = {}
    for folder, (module, _) in PACKAGES.items():
        for line in (HERE / folder / "go.mod").read_text().splitlines():
            words = line.replace("require", "").split()
            if len(words) == 2 and words[0] == module:
                versions[module] = words[1]
    return versions


def cache_key(go_version: str) -> str:
    digest = hashlib.sha256(go_version.encode())
    for folder in MODULES:
        for name in ("go.mod", "go.sum", "tools.go"):
            digest.update((HERE / folder / name).read_bytes())
    digest.update(repr((PACKAGES, RECIPE)).encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("MAILRELAY_CACHE_DIR", DEFAULT_CACHE))


def ensure_binaries(log: bool = True) -> Binaries:
    """Return the cached binaries, building them first if this pin has not been built on this machine."""
    go = find_go()
    versions = _pinned_versions()
    folder = cache_root() / f"controlplane-{cache_key(_go_version(go))}"
    if not _complete(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building the same pin right now
            if not _complete(folder):
                _build(go, folder, versions, log)
    if not (folder / KWOK_STAGES).is_file():
        _write_kwok_stages(go, folder)
    if log:
        print(f"control plane: {_describe(versions)} in {folder}", file=sys.stderr)
    return Binaries(folder, versions)


def _describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{module} {version}" for module, version in versions.items())


def _complete(folder: Path) -> bool:
    return all((folder / "bin" / name).is_file() for name in BINARIES) and (folder / "VERSIONS").is_file()


def _build(go: str, folder: Path, versions: dict[str, str], log: bool) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    try:
        for module_folder, (module, packages) in PACKAGES.items():
            if log:
                print(
                    f"control plane: building {module} {versions[module]} (first time only; minutes)",
                    file=sys.stderr,
                    flush=True,
                )
            cwd = HERE / module_folder
            _run(go, ["mod", "download"], cwd, env)
            ldflags = ["-s", "-w"]
            if module == "k8s.io/kubernetes":
                ldflags += _kube_version_flags(versions[module])
            for package in packages:
                name = OUTPUT_NAMES.get(package, package.rsplit("/", 1)[-1])
                _run(
                    go,
                    ["build", "-trimpath", f"-ldflags={' '.join(ldflags)}", "-o", str(staging / "bin" / name), package],
                    cwd,
                    env,
                )
        lines = [f"{module} {version}" for module, version in versions.items()]
        lines.append(f"go {_go_version(go)}")
        (staging / "VERSIONS").write_text("\n".join(lines) + "\n")
        staging.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        print(f"control plane: built in {time.monotonic() - started:.0f} s", file=sys.stderr)


def _write_kwok_stages(go: str, folder: Path) -> None:
    """Copy the Stage objects the pinned kwok module ships (a kustomization of plain files, no patches)."""
    env = dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    module_dir = Path(_run(go, ["list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"], HERE / "kwok", env).strip())
    documents = [path.read_text().strip() for path in _kustomize_files(module_dir / KWOK_STAGE_SET)]
    staging = folder / f".{KWOK_STAGES}.{os.getpid()}"
    staging.write_text("\n---\n".join(documents) + "\n")
    staging.rename(folder / KWOK_STAGES)


def _kustomize_files(directory: Path) -> list[Path]:
    import yaml  # only here: the build itself needs nothing beyond the standard library

    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if set(kustomization) - {"apiVersion", "kind", "resources"}:
        raise BuildError(f"{directory}/kustomization.yaml does more than list resources; render it with kubectl")
    files: list[Path] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        files += _kustomize_files(path) if path.is_dir() else [path]
    return files


def main() -> int:
    try:
        binaries = ensure_binaries()
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(binaries.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
