"""The local OCI registry (CNCF Distribution, built from tools/controlplane/registry): plain HTTP, deletes
allowed, listening only on loopback or a node's veth address. It serves the images and the OCI indexes and
artifacts that podman, skopeo, helm push and cosign write.

The node's: one storage folder per cache (`<MAILRELAY_CACHE_DIR>/registry`, `data=storage()`), shared by every
run: `make images` pushes what it built there, and each node serves it on the host's end of its veth, where its
containerd pulls `ghcr.io/mailrelay-dev/...` and `registry.mailrelay.test/testing/...` through mirror
configuration. The registry writes content-addressed blobs and renames tag links into place, so several
registry processes may share the folder.

The release tests': storage of their own in `folder`, and with `token_realm` clients must log in:
Distribution's `silly` access controller sends them to that token endpoint (the test's own, which checks
their credentials) and then admits any bearer token.

    with Registry(folder) as registry:      # builds the binary once (cached), starts, waits for /v2/
        registry.address                     # 127.0.0.1:<port>
        registry.manifest("mailrelay-dev/postfix", "0.2.0")   # (media type, parsed manifest)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from controlplane.build import cache_root, ensure_binaries
from controlplane.processes import free_port, spawn, stop

CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {address}
health:
  storagedriver:
    enabled: false
"""
AUTH = """auth:
  silly:
    realm: {realm}
    service: mailrelay-test-registry
"""
# Distribution exports OpenTelemetry traces to an OTLP endpoint unless told not to.
QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# What a node pulls: one image's manifest.
ACCEPT_IMAGE = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

# Straight to loopback or the node's veth, whatever proxy the environment names.
_OPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def storage() -> Path:
    return cache_root() / "registry"


def repository(name: str) -> str:
    """`ghcr.io/mailrelay-dev/postfix:<version>` -> `mailrelay-dev/postfix:<version>`: the path the mirror asks for."""
    return name.split("/", 1)[1]


class Registry:
    """One registry process on `host:port` (a free port unless given), its config and log in `folder`, its
    storage in `data` (default `folder`/storage). `binary`: the registry's, else built (cached) on start."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        data: Path | None = None,
        token_realm: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.folder, self.binary = folder, binary
        self.address = f"{host}:{port or free_port(host)}"
        self.data = data or folder / "storage"
        self.token_realm = token_realm
        # What this class's own reads send: any bearer token passes `silly` once a client has one.
        self.headers = {"Authorization": "Bearer test"} if token_realm else {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Registry:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "registry.yaml"
        auth = AUTH.format(realm=self.token_realm) if self.token_realm else ""
        config.write_text(CONFIG.format(storage=self.data, address=self.address) + auth)
        binary = self.binary or ensure_binaries(group="registry").path("registry")
        argv = [binary, "serve", str(config)]
        self.process = spawn(argv, self.folder / "registry.log", env={**os.environ, **QUIET}, tied=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the registry exited with {self.process.returncode}; see {self.folder}/registry.log"
                )
            with contextlib.suppress(OSError), _OPEN(self._request("/v2/"), timeout=2):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"the registry did not answer on {self.address}; see {self.folder}/registry.log")

    def stop(self) -> None:
        stop(self.process)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def has(self, reference: str) -> bool:
        """Whether the registry has `repository:tag` (a path in this registry, not an image's release name)."""
        repo, tag = reference.rsplit(":", 1)
        try:
            with _OPEN(self._request(f"/v2/{repo}/manifests/{tag}", ACCEPT_IMAGE, method="HEAD"), timeout=10):
                return True
        except OSError:
            return False

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(media type, manifest) of a tag or digest, as a client pulling it gets them."""
        with _OPEN(self._request(f"/v2/{repository}/manifests/{reference}", ACCEPT), timeout=10) as answer:
            return answer.headers["Content-Type"], json.loads(answer.read())

    def tags(self, repository: str) -> list[str]:
        with _OPEN(self._request(f"/v2/{repository}/tags/list"), timeout=10) as answer:
            found: list[str] = json.loads(answer.read()).get("tags") or []
            return found

    def _request(self, path: str, accept: str | None = None, method: str = "GET") -> urllib.request.Request:
        headers = {**self.headers, **({"Accept": accept} if accept else {})}
        return urllib.request.Request(f"http://{self.address}{path}", headers=headers, method=method)
