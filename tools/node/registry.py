"""The local OCI registry (CNCF Distribution, built from tools/controlplane/registry) and pushing images to it.

One storage folder per cache (`<MAILRELAY_CACHE_DIR>/registry`), shared by every run: `make images` pushes
what it built there, and each node serves it on the host's end of its veth, where its containerd pulls
`ghcr.io/mailrelay-dev/...` and `registry.mailrelay.test/testing/...` through mirror configuration. The
registry writes content-addressed blobs and renames tag links into place, so several registry processes
may share the folder. It listens only on loopback or a node's veth address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from controlplane.build import cache_root

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
# Distribution exports OpenTelemetry traces to an OTLP endpoint unless told not to.
QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}


def storage() -> Path:
    return cache_root() / "registry"


def repository(name: str) -> str:
    """`ghcr.io/mailrelay-dev/postfix:<version>` -> `mailrelay-dev/postfix:<version>`: the path the mirror asks for."""
    return name.split("/", 1)[1]


class Registry:
    """One registry process on `host:port`, serving the shared storage."""

    def __init__(self, binary: str, host: str, port: int, folder: Path, data: Path | None = None) -> None:
        self.binary, self.address, self.folder = binary, f"{host}:{port}", folder
        self.data = data or storage()  # the shared storage unless told otherwise
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Registry:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "registry.yaml"
        config.write_text(CONFIG.format(storage=self.data, address=self.address))
        with (self.folder / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(config)],
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
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
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

    def has(self, reference: str) -> bool:
        """Whether the registry has `repository:tag` (a path in this registry, not an image's release name)."""
        repo, tag = reference.rsplit(":", 1)
        accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": accept}
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
