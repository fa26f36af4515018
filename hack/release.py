"""Releases: check that a version agrees everywhere, prepare one, and publish one to an OCI registry.

    python hack/release.py check 0.2.0     # pyproject.toml, its copies, CHANGELOG.md, RELEASES and git agree
    python hack/release.py bump 0.2.0      # write the version everywhere and open its CHANGELOG.md section
    python hack/release.py notes 0.2.0     # that section: the text of the GitHub release
    python hack/release.py publish --registry ghcr.io/mailrelay-dev --key cosign.key --public-key cosign.pub \\
        [--platforms linux/amd64,linux/arm64] [--source DIR] [--version V] [--summary FILE]

`make release VERSION=x.y.z` runs check, then publish of this checkout. publish builds both images for
each platform (image/build.py), writes each one's SBOM (syft, SPDX), pushes each image as one index over
its platforms (skopeo, digests kept), signs every index and platform manifest and attests each platform's
SBOM (cosign, with a key, no transparency log), pushes the chart as an OCI artifact (helm push) and signs
it, then verifies all of it with the public key. A registry on loopback is spoken to over plain HTTP.
`--source` publishes another checkout as it is: the previous release, built from its commit by the
upgrade test, with `--revision` naming that commit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import changelog
import oci
import versions
from signing import Cosign, SigningError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from mailrelay.version import OPERATOR_IMAGE_REPOSITORY, POSTFIX_IMAGE_REPOSITORY  # noqa: E402

from gotools.build import ensure  # noqa: E402

# image/build.py's names → the repository under the registry
IMAGES = {
    "operator": OPERATOR_IMAGE_REPOSITORY.rsplit("/", 1)[1],
    "postfix": POSTFIX_IMAGE_REPOSITORY.rsplit("/", 1)[1],
}
PLATFORMS = {"linux/amd64": "amd64", "linux/arm64": "arm64"}  # OCI platform → Debian architecture
CHART = "manifests/helm/mailrelay-operator"
SOURCE_URL = "https://github.com/mailrelay-dev/mailrelay-operator"
LOOPBACK = ("localhost", "127.", "[::1]")
NOWHERE = "http://127.0.0.1:9"  # a proxy on loopback that nobody listens on


class ReleaseError(RuntimeError):
    """A step failed; the message says which and why."""


def run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode:
        raise ReleaseError(f"`{' '.join(command)}` failed ({done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
    return done.stdout + done.stderr


def tool(name: str) -> str:
    found = shutil.which(name) or (
        str(ROOT / ".tools" / "bin" / name) if (ROOT / ".tools/bin" / name).is_file() else ""
    )
    if not found:
        raise ReleaseError(f"{name} is missing: `make tools` fetches helm, `make system-deps` installs skopeo")
    return found


def git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if done.returncode and check:  # e.g. "dubious ownership": never read as "clean" or "no tag"
        raise ReleaseError(f"`git {' '.join(args)}` failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


def problems(root: Path, version: str) -> list[str]:
    """Everything that keeps `root` from being released as `version`; empty when all agree."""
    try:
        versions.check_version(version)
        found = versions.project_version(root)
    except versions.VersionError as error:
        return [str(error)]
    wrong = [] if found == version else [f"pyproject.toml says {found}, not {version}: run `make bump`"]
    for script, args in (("generate.py", ["--check"]), ("chart_readme.py", ["--check"]), ("monitoring.py", [])):
        command = [sys.executable, str(root / "hack" / script), *args]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
        if done.returncode:  # each names the stale files and what to run
            wrong += done.stderr.strip().splitlines() or [f"hack/{script} failed ({done.returncode})"]
    wrong += changelog.problems((root / "CHANGELOG.md").read_text(), version)
    released = changelog.releases(root / "RELEASES")
    if (root / ".git").exists():
        head = git(root, "rev-parse", "HEAD")
        if released.get(version, head) != head:
            wrong.append(f"RELEASES: {version} was released from {released[version]}, not from HEAD ({head})")
        if git(root, "status", "--porcelain", "--untracked-files=no"):
            wrong.append("the working tree has uncommitted changes: a release is built from a commit")
        tag = git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/v{version}^{{commit}}", check=False)
        if tag and tag != head:
            wrong.append(f"the tag v{version} points at {tag}, not at HEAD ({head})")
    elif version in released:
        wrong.append(f"RELEASES: {version} was released already, from {released[version]}")
    return wrong


def check(root: Path, version: str) -> int:
    wrong = problems(root, version)
    for problem in wrong:
        print(f"release {version}: {problem}", file=sys.stderr)
    if not wrong:
        print(f"release {version}: pyproject.toml, its copies, CHANGELOG.md and RELEASES agree", file=sys.stderr)
    return 1 if wrong else 0


def bump(root: Path, version: str, date: str) -> None:
    """Write the version everywhere `make generate` would, and give it the Unreleased changes."""
    path = root / "CHANGELOG.md"
    bumped = changelog.bump(path.read_text(), version, date)  # first, so a refusal changes nothing
    versions.set_version(root, version)
    run(sys.executable, str(root / "hack" / "chart_readme.py"), "write", cwd=root)  # the default Postfix image
    path.write_text(bumped)


def build_images(tree: Path, platforms: list[str], work: Path) -> dict[str, dict[str, Path]]:
    """Platform → image name → its OCI layout, built from `tree` by this checkout's image/build.py."""
    layouts: dict[str, dict[str, Path]] = {}
    for platform in platforms:
        folder = work / "oci" / PLATFORMS[platform]
        env = {**os.environ, "MAILRELAY_IMAGE_ARCH": PLATFORMS[platform], "MAILRELAY_IMAGE_SOURCE": str(tree)}
        print(f"release: building {', '.join(IMAGES)} for {platform}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, str(ROOT / "image" / "build.py"), "--oci", str(folder), *IMAGES], env=env
        )
        if done.returncode:
            raise ReleaseError(f"building the images for {platform} failed ({done.returncode}); see above")
        layouts[platform] = {name: folder / name for name in IMAGES}
    return layouts


def login(registry: str) -> None:
    """Log skopeo, helm and cosign in to the registry's host as REGISTRY_USERNAME with REGISTRY_PASSWORD,
    each in its own credential file (REGISTRY_AUTH_FILE, HELM_REGISTRY_CONFIG, DOCKER_CONFIG move them).
    The password goes through stdin, never an argument."""
    user, password = os.environ.get("REGISTRY_USERNAME", ""), os.environ.get("REGISTRY_PASSWORD", "")
    if not user or not password:
        raise ReleaseError("set REGISTRY_USERNAME and REGISTRY_PASSWORD to log in")
    host = registry.split("/", 1)[0]
    plain = host.startswith(LOOPBACK)
    for command in (
        [tool("skopeo"), "login", *(["--tls-verify=false"] if plain else []), "--username", user, "--password-stdin"],
        [
            tool("helm"),
            "registry",
            "login",
            *(["--plain-http"] if plain else []),
            "--username",
            user,
            "--password-stdin",
        ],
        [str(ensure("cosign")), "login", "--username", user, "--password-stdin"],
    ):
        run(*command, host, stdin=password)
    print(f"release: skopeo, helm and cosign logged in to {host} as {user}", file=sys.stderr)


def sbom(layout: Path, output: Path, name: str, version: str) -> Path:
    """SPDX JSON of one platform's image (syft, offline: no update check)."""
    # It reads a local layout: no update check, and no connection anywhere (a proxy nobody listens on).
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", "HTTPS_PROXY": NOWHERE, "HTTP_PROXY": NOWHERE}
    run(
        str(ensure("syft")),
        "scan",
        f"oci-dir:{layout}",
        "-q",
        "-o",
        f"spdx-json={output}",
        "--source-name",
        name,
        "--source-version",
        version,
        env=env,
    )
    return output


def publish(args: argparse.Namespace) -> dict[str, Any]:
    """Build, push, sign and verify; a work folder of our own (hundreds of MB of layouts) is removed after."""
    if args.work:
        return _publish(args, Path(args.work))
    with tempfile.TemporaryDirectory(prefix="mailrelay-release-") as work:
        return _publish(args, Path(work))


def _publish(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    tree = Path(args.source).resolve()
    version = versions.project_version(tree)
    registry = args.registry.rstrip("/")
    plain = registry.startswith(LOOPBACK)
    platforms = args.platforms.split(",")
    unknown = set(platforms) - set(PLATFORMS)
    if unknown:
        raise ReleaseError(f"unknown platform(s) {', '.join(sorted(unknown))}; known: {', '.join(PLATFORMS)}")
    cosign = Cosign(str(ensure("cosign")), args.key, args.public_key, plain)
    cosign.check_pair(work)  # a secret that is not the published key's pair fails here, before any push
    revision = args.revision or git(tree, "rev-parse", "HEAD", check=False)
    annotations = {"org.opencontainers.image.version": version, "org.opencontainers.image.source": SOURCE_URL}
    if revision:
        annotations["org.opencontainers.image.revision"] = revision
    layouts = build_images(tree, platforms, work)
    images: dict[str, Any] = {}
    for name, repository in IMAGES.items():
        reference = f"{registry}/{repository}"
        merged = oci.merge([layouts[p][name] for p in platforms], work / "push" / name, version, annotations)
        sboms = {
            p: sbom(layouts[p][name], work / f"{name}-{PLATFORMS[p]}.spdx.json", reference, version) for p in platforms
        }
        copy = [tool("skopeo"), "copy", "--quiet", "--all", "--preserve-digests"]
        run(
            *copy,
            *(["--dest-tls-verify=false"] if plain else []),
            f"oci:{merged.layout}:{version}",
            f"docker://{reference}:{version}",
        )
        cosign.sign(f"{reference}@{merged.digest}", recursive=True)
        for platform, digest in merged.platforms.items():
            cosign.attest(f"{reference}@{digest}", sboms[platform])
        print(f"release: pushed and signed {reference}:{version}@{merged.digest}", file=sys.stderr, flush=True)
        images[name] = {"reference": reference, "digest": merged.digest, "platforms": merged.platforms}
    chart = push_chart(tree, registry, version, work, plain, cosign)
    summary = {"version": version, "registry": registry, "images": images, "chart": chart}
    verify(summary, cosign)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def push_chart(tree: Path, registry: str, version: str, work: Path, plain: bool, cosign: Cosign) -> dict[str, str]:
    helm = tool("helm")
    run(helm, "package", str(tree / CHART), "-d", str(work))
    package = work / f"mailrelay-operator-{version}.tgz"
    if not package.is_file():
        raise ReleaseError(f"helm package wrote no {package.name}: the chart's version is not {version}")
    pushed = run(helm, "push", str(package), f"oci://{registry}/charts", *(["--plain-http"] if plain else []))
    digest = next((line.split()[-1] for line in pushed.splitlines() if line.startswith("Digest:")), "")
    if not digest.startswith("sha256:"):
        raise ReleaseError(f"helm push printed no digest:\n{pushed}")
    reference = f"{registry}/charts/mailrelay-operator"
    cosign.sign(f"{reference}@{digest}", recursive=False)
    print(f"release: pushed and signed oci://{reference}:{version}@{digest}", file=sys.stderr, flush=True)
    return {"reference": f"oci://{reference}", "digest": digest}


def verify(summary: dict[str, Any], cosign: Cosign) -> None:
    """Every signature and attestation just made, checked with the public key the users get."""
    for image in summary["images"].values():
        cosign.verify(f"{image['reference']}@{image['digest']}")
        for digest in image["platforms"].values():
            cosign.verify(f"{image['reference']}@{digest}")
            cosign.verify_attestation(f"{image['reference']}@{digest}")
    chart = summary["chart"]
    cosign.verify(f"{chart['reference'].removeprefix('oci://')}@{chart['digest']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "bump", "notes"):
        command = commands.add_parser(name)
        command.add_argument("version")
        command.add_argument("--root", default=str(ROOT))
    commands.choices["bump"].add_argument("--date", default=datetime.date.today().isoformat())
    commands.add_parser("login").add_argument("registry", help="e.g. ghcr.io/mailrelay-dev (its host is used)")
    pub = commands.add_parser("publish")
    pub.add_argument("--registry", required=True, help="e.g. ghcr.io/mailrelay-dev")
    pub.add_argument("--key", required=True, help="cosign private key: a file, or env://VAR")
    pub.add_argument("--public-key", required=True, help="the public key users verify with")
    pub.add_argument("--platforms", default=",".join(PLATFORMS))
    pub.add_argument("--source", default=str(ROOT))
    pub.add_argument("--revision", help="the commit the source is (default: its git HEAD, if it is a checkout)")
    pub.add_argument("--summary", help="write what was pushed (references, digests) as JSON here")
    pub.add_argument("--work", help="a folder for the build outputs (default: a new temporary one)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check(Path(args.root), args.version)
        if args.command == "bump":
            bump(Path(args.root), args.version, args.date)
        elif args.command == "login":
            login(args.registry)
        elif args.command == "notes":
            sys.stdout.write(changelog.notes((Path(args.root) / "CHANGELOG.md").read_text(), args.version))
        else:
            print(json.dumps(publish(args), indent=2))
    except (ReleaseError, SigningError, ValueError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
