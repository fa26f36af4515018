#!/usr/bin/env python3
"""Build the relay and operator images from their Dockerfiles, unchanged, without a registry or daemon.

The Dockerfiles start `FROM debian:12.11-slim`. Instead of pulling it, a Debian minbase rootfs is made
with debootstrap (trimmed like Debian's slim images), cached outside the repository keyed by suite and
point release, and imported under that exact name; then `podman build --isolation=chroot` on vfs
storage builds each Dockerfile. A built image is tagged with a hash of its inputs (base image, the
Dockerfile and every file it copies), so a rerun skips images whose inputs did not change.

MAILRELAY_IMAGE_ARCH=arm64 builds for another Debian architecture than the machine's: debootstrap and
every RUN step execute that architecture's binaries through qemu-user (binfmt_misc, Debian's
qemu-user-static), in a podman store of its own where the FROM name is that architecture's base.
MAILRELAY_IMAGE_SOURCE=DIR builds another checkout's Dockerfiles and files (a previous release, for
hack/release.py); such images are not tagged with the names the manifests use. `--oci DIR` exports each
built image as an OCI layout, DIR/<name>, for hack/release.py to scan, sign and push.

The node's test images (image/testing/: pause, client, sink, coredns) are built the same way under
`registry.mailrelay.test/testing/<name>:dev`; tools/node pushes all of them to the local registry.

A RUN step can fail for no fault of its own: podman re-executes itself from a sealed in-memory copy of its
binary (containers/storage pkg/unshare), and the kernel refuses the seal with EBUSY ("Close_Fd sealing memfd
copy: Device or resource busy") when another agent still holds a reference to one of the copy's pages after
its short wait (mm/memfd.c, memfd_wait_for_pins); on a busy machine that is a race. Such failures, and
network failures of apt, are retried (twice, said in the log); anything else fails at once.

Usage: build.py [--oci DIR] [postfix|operator|pause|client|sink|coredns ...]   (runs as root)
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path("/var/cache/mailrelay-operator")
CACHE = Path(os.environ.get("MAILRELAY_CACHE_DIR", DEFAULT_CACHE))
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
ARCH = os.environ.get("MAILRELAY_IMAGE_ARCH") or HOST_ARCH  # a Debian architecture name
_FOREIGN = "" if ARCH == HOST_ARCH else f"-{ARCH}"
# podman records the runroot in its store: one per store (a second cache, e.g. for a cold build, gets its own).
_OTHER = "" if CACHE == DEFAULT_CACHE else f"-{hashlib.sha256(bytes(CACHE / 'containers')).hexdigest()[:8]}"
STORE = CACHE / f"containers{_FOREIGN}"
RUN_ROOT = Path(f"/run/mailrelay-operator/containers{_OTHER}{_FOREIGN}")
SOURCE = Path(os.environ.get("MAILRELAY_IMAGE_SOURCE") or ROOT).resolve()
QEMU = {"arm64": "qemu-aarch64", "armhf": "qemu-arm", "ppc64el": "qemu-ppc64le", "s390x": "qemu-s390x"}
MIRROR = os.environ.get("MAILRELAY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
TESTING_TAG = "registry.mailrelay.test/testing/{name}:dev"
# Output of a failed podman run that says nothing about the Dockerfile: worth another try.
TRANSIENT = (
    "sealing memfd copy",
    "Error during reexec",
    "Device or resource busy",
    "Temporary failure resolving",
    "Failed to fetch",
    "Connection timed out",
    "Connection reset by peer",
)
RETRIES = 2
BUILD_TAG = "localhost/mailrelay-build"  # <image>:<inputs hash>, the record that an input set was built
ROOTFS_LABEL = "dev.mailrelay.rootfs"
# What Debian's slim images leave out (debuerreotype's slimify) and how their apt is set up.
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_CLEAN = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
APT_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{_CLEAN}"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""
SOURCES = f"""\
Types: deb
URIs: {MIRROR}
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {MIRROR.rsplit("/", 1)[0]}/debian-security
Suites: {SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@dataclass(frozen=True)
class Image:
    name: str  # the short name used on the command line and in the build tag
    tag: str  # the name the product's manifests use
    dockerfile: Path
    where: Path | Callable[[], Path]  # the build context, or how to find it (a build output)

    @property
    def context(self) -> Path:
        return self.where if isinstance(self.where, Path) else self.where()


def images() -> dict[str, Image]:
    from mailrelay.version import OPERATOR_IMAGE, RELEASED_POSTFIX_IMAGE

    postfix, operator = SOURCE / "image/postfix/Dockerfile", SOURCE / "image/operator/Dockerfile"
    return {
        "postfix": Image("postfix", RELEASED_POSTFIX_IMAGE, postfix, context_of(postfix)),
        "operator": Image("operator", OPERATOR_IMAGE, operator, context_of(operator)),
    }


def testing_images() -> dict[str, Image]:
    """The node's images (tools/node); coredns is built from the binary in the Go build cache."""
    found = {
        name: Image(
            name,
            TESTING_TAG.format(name=name),
            ROOT / "image/testing" / name / "Dockerfile",
            ROOT / "image/testing" / name,
        )
        for name in ("pause", "client", "sink")
    }
    found["coredns"] = Image(
        "coredns", TESTING_TAG.format(name="coredns"), ROOT / "image/testing/coredns/Dockerfile", _coredns_context
    )
    return found


def _coredns_context() -> Path:
    sys.path.insert(0, str(ROOT / "tools"))
    from controlplane.build import ensure_binaries

    binary = Path(ensure_binaries(log=False, group="coredns").path("coredns"))
    return binary.parent


def all_images() -> dict[str, Image]:
    return {**images(), **testing_images()}


def _store() -> list[str]:
    """podman on the project's own vfs store."""
    return ["podman", "--root", str(STORE), "--runroot", str(RUN_ROOT), "--storage-driver", "vfs"]


def podman(*args: str, capture: bool = True) -> str:
    """podman on the project's own vfs store, so it never meets another storage driver's state."""
    command = [*_store(), "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]
    for attempt in range(RETRIES + 1):
        code, out, err = _run(command, capture)
        if code == 0:
            return out
        if attempt < RETRIES and any(marker in err for marker in TRANSIENT):
            cause = next(line for line in err.splitlines()[::-1] if any(m in line for m in TRANSIENT))
            print(
                f"build: podman {args[0]} failed on a transient error, retrying ({attempt + 1}/{RETRIES}): "
                f"{cause.strip()[:300]}",
                flush=True,
            )
            time.sleep(3)
            continue
        raise SystemExit(f"{shlex.join(command)} failed ({code})\n{err[-4000:] if capture else ''}")
    raise AssertionError("unreachable")


def _run(command: list[str], capture: bool) -> tuple[int, str, str]:
    """Run podman; unless capturing, its output streams through while the last of it is kept for the verdict."""
    if capture:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        return result.returncode, result.stdout, result.stderr
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout
    tail: list[str] = []
    for line in process.stdout:
        sys.stdout.write(line)
        tail = [*tail[-199:], line]
    sys.stdout.flush()
    return process.wait(), "", "".join(tail)


def image_id(reference: str) -> str | None:
    result = subprocess.run(
        [*_store(), "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def from_names() -> set[str]:
    """Every external `FROM` of the Dockerfiles (stage names excluded)."""
    names: set[str] = set()
    for image in all_images().values():
        stages: set[str] = set()
        for line in image.dockerfile.read_text().splitlines():
            match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
            if match:
                if match.group(1) not in stages:
                    names.add(match.group(1))
                if match.group(2):
                    stages.add(match.group(2))
    return names


def qualified(name: str) -> str:
    """`debian:12.11-slim` → `docker.io/library/debian:12.11-slim`, the name a pull would have given."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def point_release() -> str:
    """The suite's current point release on the mirror (e.g. 12.12), the key of the cached rootfs."""
    with urllib.request.urlopen(f"{MIRROR}/dists/{SUITE}/InRelease", timeout=60) as response:
        text = response.read().decode(errors="replace")
    match = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"no Version in {MIRROR}/dists/{SUITE}/InRelease")
    return match.group(1)


def slim(target: Path) -> None:
    """Drop what SLIM_DPKG excludes (debootstrap's first stage unpacks without dpkg) and host leftovers."""
    keep = {"copyright", "locale.alias"}
    for folder in ("doc", "man", "groff", "info", "lintian", "linda", "locale"):
        for path in sorted((target / "usr/share" / folder).glob("**/*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.name not in keep:
                path.unlink()
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
        for path in (target / leftover).glob("**/*"):
            if (path.is_file() or path.is_symlink()) and path.name != "lock":
                path.unlink()
    for host_file in ("etc/hostname", "etc/resolv.conf"):  # the runtime provides these
        (target / host_file).unlink(missing_ok=True)


def base_rootfs() -> Path:
    """A debootstrapped, slimmed Debian rootfs as a tarball, made once per point release."""
    tarball = CACHE / f"debian-{SUITE}-{point_release()}{_FOREIGN}-minbase-slim.tar"
    if tarball.exists():
        return tarball
    if _FOREIGN:
        emulator = Path("/proc/sys/fs/binfmt_misc") / QEMU.get(ARCH, f"qemu-{ARCH}")
        if not emulator.is_file() or "enabled" not in emulator.read_text():
            raise SystemExit(
                f"build: {ARCH} binaries cannot run here: {emulator} is not registered "
                "(install Debian's qemu-user-static and binfmt-support; binfmt_misc must be mounted)"
            )
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as work:
        target = Path(work) / "rootfs"
        (target / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
        (target / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)  # dpkg honours it during debootstrap
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--arch={ARCH}", SUITE, str(target), MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (target / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
        (target / "etc/apt/sources.list").unlink(missing_ok=True)
        (target / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
        slim(target)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    print(f"build: debootstrap {SUITE} into {tarball} took {time.monotonic() - started:.0f}s", flush=True)
    return tarball


def import_base() -> None:
    """Import the cached rootfs under every name the Dockerfiles start FROM, unless already there."""
    tarball = base_rootfs()
    for name in sorted(from_names()):
        reference = qualified(name)
        current = (
            podman("image", "inspect", "--format", f'{{{{index .Labels "{ROOTFS_LABEL}"}}}}', reference)
            if image_id(reference)
            else ""
        )
        if current.strip() == tarball.name:
            continue
        podman(
            "import",
            f"--arch={ARCH}",
            "--change",
            f"LABEL {ROOTFS_LABEL}={tarball.name}",
            "--change",
            'CMD ["bash"]',
            str(tarball),
            reference,
        )
        print(f"build: imported {tarball.name} as {reference}", flush=True)


def copied_sources(dockerfile: Path) -> list[str]:
    """The context paths a Dockerfile's COPY/ADD lines take (not those from other stages)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


def copied_paths(image: Image) -> list[Path]:
    return [image.context / source for source in copied_sources(image.dockerfile)]


def context_of(dockerfile: Path) -> Path:
    """The repository root, or the Dockerfile's own folder (how 0.1.0 built the relay image): whichever
    holds every file the Dockerfile copies, so an older checkout builds as it did."""
    for context in (SOURCE, dockerfile.parent):
        if all((context / source).exists() for source in copied_sources(dockerfile)):
            return context
    raise SystemExit(f"build: neither {SOURCE} nor {dockerfile.parent} holds all that {dockerfile} copies")


IGNORED = {"__pycache__", ".mypy_cache", ".ruff_cache"}


def inputs_hash(image: Image, base_ids: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (*base_ids, image.dockerfile.read_text()):
        digest.update(part.encode() + b"\0")
    dockerignore = image.context / ".dockerignore"
    files = [dockerignore] if dockerignore.exists() else []
    for path in copied_paths(image):
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        if IGNORED & set(path.parts) or any(part.endswith(".egg-info") for part in path.parts):
            continue
        digest.update(f"{path.relative_to(image.context)}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def host_trust() -> list[str]:
    """Behind a TLS-inspecting proxy, pip in RUN steps must trust the host's CA bundle.

    The bundle and a pip.conf naming it are mounted read-only into the RUN steps only, so
    nothing of the host ends up in an image.
    """
    match = re.search(r"^\s*cert\s*=\s*(\S+)", _read("/etc/pip.conf"), re.MULTILINE)
    bundle = match.group(1) if match else os.environ.get("PIP_CERT", "")
    if not bundle or not Path(bundle).is_file():
        return []
    pip_conf = CACHE / "build-pip.conf"
    pip_conf.write_text("[global]\ncert = /etc/mailrelay-build-ca.crt\n")
    return [f"--volume={pip_conf}:/etc/pip.conf:ro", f"--volume={bundle}:/etc/mailrelay-build-ca.crt:ro"]


def _read(path: str) -> str:
    return Path(path).read_text() if Path(path).is_file() else ""


def build(image: Image) -> str:
    """Build one image unless one with the same inputs exists; returns its id."""
    bases = sorted(image_id(qualified(name)) or "" for name in from_names())
    key = f"{BUILD_TAG}/{image.name}:{inputs_hash(image, bases)}"
    existing = image_id(key)
    if existing is None:
        started = time.monotonic()
        # chroot isolation runs RUN steps in the host's network namespace, so apt reaches the mirror.
        podman(
            "build",
            "--isolation=chroot",
            "--pull=never",
            "--layers=false",
            "--network=host",
            f"--platform=linux/{ARCH}",
            "--force-rm",
            *host_trust(),
            "-f",
            str(image.dockerfile),
            "-t",
            key,
            str(image.context),
            capture=False,
        )
        print(f"build: {image.name} built in {time.monotonic() - started:.0f}s", flush=True)
        existing = image_id(key)
        assert existing, key
    else:
        print(f"build: {image.name} unchanged ({key})", flush=True)
    if SOURCE == ROOT and not _FOREIGN:
        podman("tag", existing, image.tag)
    prune(image, keep=key)
    return existing


def prune(image: Image, keep: str, count: int = 3) -> None:
    """Drop all but the newest `count` builds of an image, so the store does not grow without end."""
    listed = podman(
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.CreatedAt}}",
        "--filter",
        f"reference={BUILD_TAG}/{image.name}",
    )
    builds = sorted(
        (line.split(" ", 1) for line in listed.splitlines() if line.startswith(f"{BUILD_TAG}/{image.name}:")),
        key=lambda pair: pair[1],
        reverse=True,
    )
    for reference, _created in builds[count:]:
        if reference != keep:
            subprocess.run(
                [
                    "podman",
                    "--root",
                    str(STORE),
                    "--runroot",
                    str(RUN_ROOT),
                    "--storage-driver",
                    "vfs",
                    "rmi",
                    reference,
                ],
                capture_output=True,
                check=False,
            )  # in use elsewhere: kept


def export_oci(image_id: str, folder: Path) -> None:
    """The image as an OCI layout (gzip layers), replacing what the folder held."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    podman("push", "--quiet", "--format=oci", image_id, f"oci:{folder}:latest")


def main(argv: list[str]) -> int:
    oci = None
    if argv[:1] == ["--oci"] and len(argv) > 1:
        oci, argv = Path(argv[1]), argv[2:]
    known = all_images()
    wanted = argv or list(known)
    unknown = set(wanted) - set(known)
    if unknown:
        print(f"unknown image(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(f"build: building the images needs root (debootstrap, and podman's store in {STORE})", file=sys.stderr)
        return 1
    for tool in ("debootstrap", "podman"):
        if shutil.which(tool) is None:
            print(f"build: {tool} is missing (make system-deps installs it)", file=sys.stderr)
            return 1
    import_base()
    for name in wanted:
        built = build(known[name])
        if oci:
            export_oci(built, oci / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
