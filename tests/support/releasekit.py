"""What the release tests share: a committed copy of this checkout, `make` run in it as a maintainer would,
a cosign key pair made for the test, and an environment that keeps every credential in the test's folder
and every connection on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT

VENV = Path(sys.executable).parent.parent
# A proxy nobody listens on, for the tests' own cosign and helm calls: one that tried to reach Sigstore or
# any registry but the test's would fail at once, on loopback (Go clients never proxy loopback addresses).
# Not for `make release`: its image builds fetch Debian packages and PyPI wheels.
NOWHERE = "http://127.0.0.1:9"


def release_env(folder: Path) -> dict[str, str]:
    """The environment of a release run: its own HOME, credential files and cosign password."""
    home = folder / "home"
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text("{}")
    env = {
        **os.environ,
        "HOME": str(home),
        "TMPDIR": str(folder / "tmp"),  # the release tests look here for what a run leaves behind
        "DOCKER_CONFIG": str(home / ".docker"),
        "REGISTRY_AUTH_FILE": str(home / "containers-auth.json"),
        "HELM_REGISTRY_CONFIG": str(home / "helm-registry.json"),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "TUF_ROOT": str(home / "sigstore"),
        "COSIGN_PASSWORD": "test-only-password",
        "PATH": f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}",
    }
    return env


def offline(env: dict[str, str]) -> dict[str, str]:
    """The environment with every connection but loopback's refused."""
    return {**env, "HTTPS_PROXY": NOWHERE, "HTTP_PROXY": NOWHERE, "NO_PROXY": "127.0.0.1,localhost"}


def key_pair(folder: Path, env: dict[str, str], name: str = "cosign") -> tuple[Path, Path]:
    """A fresh cosign key pair (encrypted with the env's COSIGN_PASSWORD): (private, public)."""
    from gotools.build import ensure

    subprocess.run(
        [str(ensure("cosign")), "generate-key-pair", "--output-key-prefix", name],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return folder / f"{name}.key", folder / f"{name}.pub"


def committed_copy(target: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored), committed in a repository of their own."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    commit(target, "the tree under test")
    return target


def commit(tree: Path, message: str) -> str:
    if not (tree / ".git").exists():
        git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "--allow-empty", "-m", message)
    return git(tree, "rev-parse", "HEAD")


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout.strip()


def make(tree: Path, *args: str, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """`make` in the copy with this checkout's virtualenv and kube tools, which it must never reinstall:
    `-o` keeps make from rebuilding the venv from the copy's (newer) pyproject.toml."""
    installed = VENV / ".installed"
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(tree),
            f"VENV={VENV}",
            f"TOOLS={ROOT / '.tools' / 'bin'}",
            "-o",
            str(installed),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def next_version(version: str) -> str:
    """A release candidate of the next minor version: newer than the tree and than any release of it."""
    major, minor = version.split("-")[0].split(".")[:2]
    return f"{major}.{int(minor) + 1}.0-rc.1"


def prepare_release(tree: Path, version: str, date: str = "2030-01-02") -> str:
    """What a maintainer does before tagging: a line under Unreleased if it has none, `release.py bump`,
    a commit. Returns the commit."""
    import changelog

    path = tree / "CHANGELOG.md"
    if changelog.sections(path.read_text())[0].body == "":
        path.write_text(path.read_text().replace("## [Unreleased]\n", "## [Unreleased]\n\n### Added\n\n- A test.\n", 1))
    done = subprocess.run(
        [sys.executable, str(tree / "hack" / "release.py"), "bump", version, "--date", date],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return commit(tree, f"release {version}")


class TokenServer:
    """The registry's token endpoint: a token for the right Basic credentials, 401 otherwise. Records the
    User-Agent of every request it admitted or refused, so a test can tell which tool logged in."""

    def __init__(self, username: str, password: str) -> None:
        import base64
        import http.server
        import socket
        import threading

        from controlplane.processes import free_port

        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.admitted: list[str] = []
        self.refused: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                agent = self.headers.get("User-Agent", "")
                if self.headers.get("Authorization") != expected:
                    server.refused.append(agent)
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.end_headers()
                    return
                server.admitted.append(agent)
                body = b'{"token": "test", "access_token": "test", "expires_in": 3600}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class V6Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        # `localhost`, not an address: go-containerregistry (cosign) refuses a realm that is a loopback or
        # private IP literal unless it is the registry's own host:port, against token-server SSRF. A
        # client may resolve `localhost` to ::1 or to 127.0.0.1, so the endpoint listens on both, on one
        # port: with 127.0.0.1 alone, a client that tried ::1 first met whatever else had that port there.
        for _ in range(20):
            port = free_port()
            first = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
            try:
                second = V6Server(("::1", port), Handler)
            except OSError:
                first.server_close()
                continue
            break
        else:
            raise OSError("no port free on both 127.0.0.1 and ::1")
        self.servers = (first, second)
        self.realm = f"http://localhost:{port}/token"
        for server_ in self.servers:
            threading.Thread(target=server_.serve_forever, daemon=True).start()

    def close(self) -> None:
        for server_ in self.servers:
            server_.shutdown()
            server_.server_close()
