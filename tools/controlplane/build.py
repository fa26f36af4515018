"""Build the pinned Kubernetes binaries from Go modules, once, into cache folders outside the repo.

The Go modules beside this file (kubernetes/, etcd/, kwok/ for the control plane; the same kubernetes/ pin
plus coredns/, registry/ and kube-router/ for the node) pin every version through their go.mod and go.sum.
Each target (a module folder and the commands built from it) has its own cache folder, named after a hash
of that folder's go.mod, go.sum and Go files, the Go version, the packages and the build flags: a changed pin
rebuilds only its own target, and an unchanged one is reused (a second `make test` builds nothing). Compiled
packages are shared between targets through Go's own build cache (kubelet after kube-apiserver compiles only
what kube-apiserver does not link).

    python tools/controlplane/build.py [controlplane|node ...]   # default: controlplane
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path("/var/cache/mailrelay-operator")
GO_FALLBACK = Path("/usr/local/go/bin/go")
# How the binaries are built; part of the cache key, so changing it rebuilds.
RECIPE = ("-trimpath", "-ldflags=-s -w", "CGO_ENABLED=0", "kube version stamped", "one go build per target")
# kwok needs Stage objects to act as a kubelet; its module ships the "fast" set (nodes Ready with lease
# heartbeats, pods Running and Ready at once), which kwokctl uses by default.
KWOK_STAGES = "kwok-stages.yaml"
KWOK_STAGE_SET = "kustomize/stage/fast"
NETWORK_ERRORS = (
    "dial tcp",
    "proxy",
    "no such host",
    "connection refused",
    "i/o timeout",
    "403 Forbidden",
    "404 Not Found",
    "GOPROXY",
    "lookup ",
    "connection reset",
    "unexpected EOF",
    "TLS handshake",
)


@dataclass(frozen=True)
class Target:
    """Commands built from one pinned module folder, cached together."""

    folder: str  # module folder beside this file
    module: str  # the module whose version is reported
    packages: tuple[str, ...]  # main packages; the binary is named after the last path element
    names: tuple[str, ...]  # the binaries, in the order of packages
    version_flag: str = ""  # the -X variable the upstream release stamps with its version, if any


TARGETS: dict[str, Target] = {
    "kubernetes": Target(
        "kubernetes",
        "k8s.io/kubernetes",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
        ),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    ),
    # Built from go.etcd.io/etcd/server/v3, whose main package would otherwise be named `v3`.
    "etcd": Target("etcd", "go.etcd.io/etcd/server/v3", ("go.etcd.io/etcd/server/v3",), ("etcd",)),
    "kwok": Target("kwok", "sigs.k8s.io/kwok", ("sigs.k8s.io/kwok/cmd/kwok",), ("kwok",)),
    # The node: the same k8s.io/kubernetes pin as the control plane (one go.mod), a target of its own so the
    # control plane's cache stays valid and `make controlplane` does not build a kubelet.
    "kubelet": Target(
        "kubernetes",
        "k8s.io/kubernetes",
        ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"),
        ("kubelet", "kube-proxy"),
    ),
    "coredns": Target(
        "coredns", "github.com/coredns/coredns", ("mailrelay.dev/controlplane/coredns/cmd/coredns",), ("coredns",)
    ),
    "registry": Target(
        "registry",
        "github.com/distribution/distribution/v3",
        ("github.com/distribution/distribution/v3/cmd/registry",),
        ("registry",),
        "github.com/distribution/distribution/v3/version.version",  # `registry --version`, as released
    ),
    "kube-router": Target(
        "kube-router",
        "github.com/cloudnativelabs/kube-router/v2",
        ("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",),
        ("kube-router",),
    ),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "controlplane": ("kubernetes", "etcd", "kwok"),
    "node": ("kubelet", "coredns", "registry", "kube-router"),
}


class BuildError(RuntimeError):
    """The binaries cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the built commands, and the module versions they were built from."""

    folders: dict[str, Path]  # target name -> its cache folder
    versions: dict[str, str]

    def path(self, name: str) -> str:
        for folder in self.folders.values():
            if (folder / "bin" / name).is_file():
                return str(folder / "bin" / name)
        raise BuildError(f"no binary {name} in {', '.join(map(str, self.folders.values()))}")

    def data(self, target: str, name: str) -> Path:
        """A file a target's build wrote beside its binaries (kwok's stages)."""
        return self.folders[target] / name

    def merged(self, other: Binaries) -> Binaries:
        return Binaries({**self.folders, **other.folders}, {**self.versions, **other.versions})


def find_go() -> str:
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if not go:
        raise BuildError(
            "Go is not installed (no `go` on PATH, nor /usr/local/go/bin/go); the control plane "
            "for the tests and `make cluster` is built from Go modules: install Go 1.26 or newer"
        )
    return go


def _run(go: str, args: list[str], cwd: Path, env: dict[str, str], retry: bool = False) -> str:
    done = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode and retry and any(s in done.stderr for s in NETWORK_ERRORS):
        # A proxy hiccup (reset, timeout) fails a cold build half-way; one more try, said out loud.
        print(
            f"build: `go {' '.join(args)}` in {cwd.name}/ failed on the network, retrying once in 5 s:\n"
            f"  {done.stderr.strip().splitlines()[-1][:300]}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(5)
        done = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        text = done.stderr.strip()[-3000:]
        hint = ""
        if any(s in text for s in NETWORK_ERRORS):
            proxy = env.get("GOPROXY") or _goenv(go, "GOPROXY")
            hint = (
                f"\nthe Go module proxy could not be reached (GOPROXY={proxy}); "
                "the control plane and the node are built from the modules it serves"
            )
        raise BuildError(f"`go {' '.join(args)}` failed in {cwd.name}/:\n{text}{hint}")
    return done.stdout


def _goenv(go: str, name: str) -> str:
    return subprocess.run([go, "env", name], capture_output=True, text=True, check=False).stdout.strip()


def _go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def go_env() -> dict[str, str]:
    """How every binary is built: no cgo, only what go.sum pins, this machine's Go (never a downloaded one)."""
    return dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")


def required_version(folder: Path, module: str, shown: str) -> str:
    """The version of `module` that `folder`/go.mod requires (no Go needed); `shown` names the folder in errors."""
    for line in (folder / "go.mod").read_text().splitlines():
        words = line.replace("require", "").split()
        if len(words) == 2 and words[0] == module:
            return words[1]
    raise BuildError(f"{shown}/go.mod does not require {module}")


def build_once(folder: Path, complete: Callable[[], bool], build: Callable[[], None]) -> None:
    """Run `build` unless `complete()`, under a lock beside `folder`: another run may be building the same pin."""
    if not complete():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not complete():
                build()


@contextlib.contextmanager
def staged(folder: Path, module: str, version: str, go: str) -> Iterator[Path]:
    """A fresh folder beside `folder` to build into; once the build succeeds it gets a VERSIONS file and
    replaces `folder` whole, so a reader never finds half a build and a failed one leaves nothing behind."""
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    try:
        yield staging
        (staging / "VERSIONS").write_text(f"{module} {version}\ngo {_go_version(go)}\n")
        staging.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def pinned_version(target: Target) -> str:
    """The target's pinned version, read from its go.mod `require` line (no Go needed)."""
    return required_version(HERE / target.folder, target.module, target.folder)


def _inputs(folder: str) -> list[Path]:
    base = HERE / folder
    return [base / "go.mod", base / "go.sum", *sorted(base.rglob("*.go"))]


def cache_key(name: str, go_version: str) -> str:
    target = TARGETS[name]
    digest = hashlib.sha256(go_version.encode())
    for path in _inputs(target.folder):
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    digest.update(repr((target, RECIPE)).encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("MAILRELAY_CACHE_DIR", DEFAULT_CACHE))


def ensure_binaries(log: bool = True, group: str = "controlplane") -> Binaries:
    """The cached binaries of a group (or of one target), building those not yet built for these pins."""
    go = find_go()
    go_version = _go_version(go)
    folders, versions = {}, {}
    for name in GROUPS.get(group, (group,)):  # a group, or one target
        target = TARGETS[name]
        folder = cache_root() / f"{name}-{cache_key(name, go_version)}"
        build_once(
            folder, functools.partial(_complete, folder, target), functools.partial(_build, go, name, folder, log)
        )
        if name == "kwok" and not (folder / KWOK_STAGES).is_file():
            _write_kwok_stages(go, folder)
        folders[name] = folder
        versions[target.module] = pinned_version(target)
    if log:
        described = ", ".join(f"{module} {version}" for module, version in versions.items())
        print(f"{group}: {described} in {cache_root()}", file=sys.stderr)
    return Binaries(folders, versions)


def _complete(folder: Path, target: Target) -> bool:
    return all((folder / "bin" / name).is_file() for name in target.names) and (folder / "VERSIONS").is_file()


def _build(go: str, name: str, folder: Path, log: bool) -> None:
    target = TARGETS[name]
    version = pinned_version(target)
    env = go_env()
    started = time.monotonic()
    if log:
        print(f"build: {name} ({target.module} {version}; first time only, minutes)", file=sys.stderr, flush=True)
    with staged(folder, target.module, version, go) as staging:
        cwd = HERE / target.folder
        _run(go, ["mod", "download"], cwd, env, retry=True)
        downloaded = time.monotonic()
        ldflags = ["-s", "-w"]
        if target.module == "k8s.io/kubernetes":
            ldflags += _kube_version_flags(version)
        if target.version_flag:
            ldflags.append(f"-X {target.version_flag}={version}")
        (staging / "bin").mkdir()
        # One invocation per target: its packages compile once and link in parallel.
        output = str(staging / "bin" / target.names[0]) if len(target.packages) == 1 else f"{staging / 'bin'}/"
        _run(
            go,
            ["build", "-trimpath", f"-ldflags={' '.join(ldflags)}", "-o", output, *target.packages],
            cwd,
            env,
            retry=True,
        )
    if log:
        print(
            f"build: {name} built in {time.monotonic() - started:.0f} s (modules {downloaded - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )


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


def main(argv: list[str]) -> int:
    groups = argv or ["controlplane"]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        print(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    return print_paths(folder for group in groups for folder in ensure_binaries(group=group).folders.values())


def print_paths(built: Iterable[Path]) -> int:
    """What a build script prints: each path as it is built, one a line; exit status 1 with the error when
    something cannot be built (tools/gotools/build.py's too)."""
    try:
        for path in built:
            print(path)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
