"""Where the API server is and how to prove who we are: the pod's service account, or a kubeconfig.

Read by hand rather than through the official client, whose import alone (every typed model of the
API) cost more memory than the rest of the operator together. Supports what an operator meets: the
in-cluster service account (its projected token is re-read as the kubelet rotates it), and in a
kubeconfig a bearer token or token file, a client certificate, or an exec credential plugin.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0  # client-go re-reads a token file this often: the kubelet rotates it


class ConfigError(RuntimeError):
    """No usable cluster configuration; the message says what is missing."""


@dataclass
class Credentials:
    """The server, how to trust it, and how to authenticate; thread-safe `authorization()`."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str = ""
    token_file: str = ""
    exec_config: dict[str, Any] | None = None
    _read_at: float = field(default=0.0, repr=False)
    _expires_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorization(self) -> str | None:
        """The Authorization header value, refreshed from its source when due; None for cert auth."""
        with self._lock:
            now = time.monotonic()
            if self.token_file and now - self._read_at > TOKEN_REREAD_SECONDS:
                self.token = Path(self.token_file).read_text().strip()
                self._read_at = now
            if self.exec_config is not None and (not self.token or (self._expires_at and now >= self._expires_at)):
                self._run_exec()
            return f"Bearer {self.token}" if self.token else None

    def expire(self) -> None:
        """Forget the token (after a 401): the next request reads or obtains it again."""
        with self._lock:
            self._read_at = 0.0
            if self.exec_config is not None:
                self.token = ""

    def _run_exec(self) -> None:
        config = self.exec_config or {}
        env = {**os.environ, **{e["name"]: e["value"] for e in config.get("env") or []}}
        done = subprocess.run(
            [config["command"], *(config.get("args") or [])],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if done.returncode:
            raise ConfigError(f"the kubeconfig's exec credential plugin {config['command']} failed ({done.returncode})")
        status = json.loads(done.stdout).get("status") or {}
        self.token = str(status.get("token") or "")
        expiry = status.get("expirationTimestamp")
        self._expires_at = 0.0
        if expiry:
            left = datetime.fromisoformat(expiry.replace("Z", "+00:00")) - datetime.now(UTC)
            self._expires_at = time.monotonic() + max(0.0, left.total_seconds() - 60)
        if status.get("clientCertificateData") and self.ssl_context is not None:
            _load_cert(self.ssl_context, status["clientCertificateData"].encode(), status["clientKeyData"].encode())


def _load_cert(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl takes certificates from files only: write them to a private file, load, delete."""
    with tempfile.NamedTemporaryFile(prefix="kube-client-", suffix=".pem") as pem:
        os.chmod(pem.name, 0o600)
        pem.write(cert + b"\n" + key + b"\n")
        pem.flush()
        context.load_cert_chain(pem.name)


def _data(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """A kubeconfig's `<key>-data` (base64) or `<key>` (a path, relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / entry[key]).read_bytes()
    return None


def in_cluster() -> Credentials:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (SERVICE_ACCOUNT / "token").is_file():
        raise ConfigError("not in a pod (no KUBERNETES_SERVICE_HOST or service account token)")
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    host = f"[{host}]" if ":" in host else host
    return Credentials(f"https://{host}:{port}", context, token_file=str(SERVICE_ACCOUNT / "token"))


def from_kubeconfig(path: Path | str | None = None, context_name: str | None = None) -> Credentials:
    """The current (or named) context of a kubeconfig: KUBECONFIG's first file, else ~/.kube/config."""
    if path is None:
        listed = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        path = listed or Path.home() / ".kube" / "config"
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no kubeconfig at {path}")
    config = yaml.safe_load(path.read_text()) or {}
    name = context_name or config.get("current-context")

    def named(section: str, wanted: str | None) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == wanted:
                return dict(item.get(section[:-1]) or {})
        raise ConfigError(f"{path}: no {section[:-1]} named {wanted!r}")

    context = named("contexts", name)
    cluster, user = named("clusters", context.get("cluster")), named("users", context.get("user"))
    base = path.parent
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"{path}: cluster {context.get('cluster')!r} has no server")
    ssl_context: ssl.SSLContext | None = None
    if server.startswith("https://"):
        ca = _data(cluster, "certificate-authority", base)
        ssl_context = ssl.create_default_context(cadata=ca.decode() if ca else None)
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        elif cluster.get("tls-server-name"):
            raise ConfigError(f"{path}: tls-server-name is not supported")
        cert, key = _data(user, "client-certificate", base), _data(user, "client-key", base)
        if cert and key:
            _load_cert(ssl_context, cert, key)
    token_file = str(base / user["tokenFile"]) if user.get("tokenFile") else ""
    return Credentials(
        server, ssl_context, token=str(user.get("token") or ""), token_file=token_file, exec_config=user.get("exec")
    )


def from_environment() -> Credentials:
    """In a pod, its service account; elsewhere the current kubeconfig context."""
    try:
        return in_cluster()
    except ConfigError:
        return from_kubeconfig()
