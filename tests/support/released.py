"""Fixtures of the release tests, once per session: a real OCI registry on loopback that wants a login, the
current tree released into it by `make release` as the next version, and the previous release (the newest
in RELEASES) published from its own commit by the same machinery. tests/conftest.py imports them (a
conftest.py of this folder would take the module name `conftest` from the one above it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import changelog
import versions
from node.registry import Registry
from support.paths import ROOT
from support.releasekit import TokenServer, committed_copy, key_pair, make, next_version, prepare_release, release_env

OWNER = "mailrelay-dev"
USERNAME = "maintainer"


def platforms() -> str:
    """The platforms the tests release: this machine's unless MAILRELAY_RELEASE_PLATFORMS names more
    (linux/amd64,linux/arm64 builds arm64 under qemu-user: about 20 min more, cold)."""
    from release import PLATFORMS

    host = next(p for p, arch in PLATFORMS.items() if arch == _host_arch())
    return os.environ.get("MAILRELAY_RELEASE_PLATFORMS", host)


def _host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]


@dataclass
class Published:
    """What one release run pushed, and what the tests need to reach it."""

    folder: Path
    registry: Registry
    tokens: TokenServer
    env: dict[str, str]
    key: Path
    public_key: Path
    tree: Path
    version: str
    summary: dict[str, Any]
    output: str
    seconds: float
    previous: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.registry.address}/{OWNER}"


def _problem() -> str | None:
    missing = [tool for tool in ("podman", "debootstrap", "skopeo", "go") if not shutil.which(tool)]
    if missing == ["go"] and Path("/usr/local/go/bin/go").exists():
        missing = []
    if missing or os.geteuid() != 0:
        return f"releases need root, podman, debootstrap, skopeo and Go: missing {', '.join(missing) or 'root'}"
    return None


@pytest.fixture(scope="session")
def published(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """`make registry-login` and `make release` in a committed copy of this checkout bumped to the next
    version, against a registry that admits only the maintainer's login."""
    problem = _problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    folder = tmp_path_factory.mktemp("release")
    env = release_env(folder)
    password = secrets.token_urlsafe(16)
    tokens = TokenServer(USERNAME, password)
    registry = Registry(folder / "registry", token_realm=tokens.realm).start()
    try:
        tree = committed_copy(folder / "tree")
        version = next_version(versions.project_version(tree))
        prepare_release(tree, version)
        key, public_key = key_pair(folder, env)
        prefix = f"{registry.address}/{OWNER}"
        login_env = {**env, "REGISTRY_USERNAME": USERNAME, "REGISTRY_PASSWORD": password}
        login = make(tree, "registry-login", f"REGISTRY={prefix}", env=login_env)
        assert login.returncode == 0, login.stdout[-3000:] + login.stderr[-3000:]
        assert password not in login.stdout + login.stderr
        started = time.monotonic()
        done = make(
            tree,
            "release",
            f"VERSION={version}",
            f"REGISTRY={prefix}",
            f"PLATFORMS={platforms()}",
            f"COSIGN_KEY={key}",
            f"COSIGN_PUBLIC_KEY={public_key}",
            f"SUMMARY={folder / 'release.json'}",
            env=env,
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, f"make release failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        # Its work folder (hundreds of MB of image layouts per run) is gone: nothing piles up in TMPDIR.
        assert not [p.name for p in (folder / "tmp").glob("mailrelay-release-*")]
        summary = json.loads((folder / "release.json").read_text())
        print(f"\nmake release {version} ({platforms()}): {seconds:.0f} s", file=sys.stderr)
        yield Published(
            folder, registry, tokens, env, key, public_key, tree, version, summary, done.stdout + done.stderr, seconds
        )
    finally:
        registry.stop()
        tokens.close()


@pytest.fixture(scope="session")
def previous(published: Published) -> dict[str, Any]:
    """The newest release in RELEASES, built from its commit (`git archive`: no tag needed) by this
    checkout's hack/release.py, pushed signed into the same registry. Its summary."""
    version, commit_id = next(iter(changelog.releases(ROOT / "RELEASES").items()))
    source = published.folder / f"previous-{version}"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit_id], capture_output=True, check=False)
    assert archive.returncode == 0, f"{commit_id} ({version}) is not in this clone: {archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    summary = published.folder / f"previous-{version}.json"
    command = [
        sys.executable,
        str(ROOT / "hack" / "release.py"),
        "publish",
        f"--registry={published.prefix}",
        f"--platforms={platforms()}",
        f"--key={published.key}",
        f"--public-key={published.public_key}",
        f"--source={source}",
        f"--summary={summary}",
        f"--revision={commit_id}",
    ]
    started = time.monotonic()
    done = subprocess.run(command, env=published.env, capture_output=True, text=True, check=False, timeout=3600)
    assert done.returncode == 0, f"publishing {version} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(
        f"\nrelease.py publish of {version} from {commit_id[:12]}: {time.monotonic() - started:.0f} s", file=sys.stderr
    )
    found: dict[str, Any] = json.loads(summary.read_text())
    assert found["version"] == version
    published.previous = found
    return found
