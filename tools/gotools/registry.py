"""A real OCI registry (CNCF Distribution, built from tools/controlplane/registry) on loopback, for the
release tests: filesystem storage in a folder of the caller's, plain HTTP, deletes allowed. It serves the
OCI image indexes and artifacts that skopeo, helm push and cosign write. With `token_realm`, clients must
log in: Distribution's `silly` access controller sends them to that token endpoint (the test's own,
which checks their credentials) and then admits any bearer token.

    with Registry(folder) as registry:      # builds the binary once (cached), starts, waits for /v2/
        registry.address                     # 127.0.0.1:<port>
        registry.manifest("mailrelay-dev/postfix", "0.2.0")   # (media type, parsed manifest)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from .build import ensure

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


# Straight to loopback, whatever proxy the environment names.
_OPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Registry:
    """One registry process on 127.0.0.1, its storage and log in `folder`."""

    def __init__(self, folder: Path, port: int | None = None, token_realm: str | None = None) -> None:
        self.folder = folder
        self.address = f"127.0.0.1:{port or free_port()}"
        self.token_realm = token_realm
        # What this class's own reads send: any bearer token passes `silly` once a client has one.
        self.headers = {"Authorization": "Bearer test"} if token_realm else {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Registry:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "registry.yaml"
        auth = AUTH.format(realm=self.token_realm) if self.token_realm else ""
        config.write_text(CONFIG.format(storage=self.folder / "storage", address=self.address) + auth)
        with (self.folder / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(ensure("registry")), "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **QUIET},
                start_new_session=True,
            )
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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(media type, manifest) of a tag or digest, as a client pulling it gets them."""
        with _OPEN(self._request(f"/v2/{repository}/manifests/{reference}", ACCEPT), timeout=10) as answer:
            return answer.headers["Content-Type"], json.loads(answer.read())

    def tags(self, repository: str) -> list[str]:
        with _OPEN(self._request(f"/v2/{repository}/tags/list"), timeout=10) as answer:
            found: list[str] = json.loads(answer.read()).get("tags") or []
            return found

    def _request(self, path: str, accept: str | None = None) -> urllib.request.Request:
        headers = {**self.headers, **({"Accept": accept} if accept else {})}
        return urllib.request.Request(f"http://{self.address}{path}", headers=headers)
