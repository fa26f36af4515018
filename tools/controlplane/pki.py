"""Certificates and keys for a throw-away control plane, made with the openssl command.

One CA signs the apiserver's serving certificate and one client certificate per identity; the bootstrap
RBAC policy of kube-apiserver already binds `system:kube-controller-manager` and `system:kube-scheduler`,
and `system:masters` is the admin group. A separate key pair signs ServiceAccount tokens.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_NAMES = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:10.96.0.1",
)
# file stem -> (common name, organisation)
CLIENTS = {
    "admin": ("kubernetes-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
}


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _subject(common_name: str, organisation: str) -> str:
    return f"/CN={common_name}" + (f"/O={organisation}" if organisation else "")


def _signed(folder: Path, stem: str, subject: str, extensions: list[str]) -> None:
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    ext = ["-addext", "basicConstraints=critical,CA:FALSE"]
    for extension in extensions:
        ext += ["-addext", extension]
    _openssl(
        "req",
        "-x509",
        *EC_KEY,
        "-keyout",
        str(folder / f"{stem}.key"),
        "-out",
        str(folder / f"{stem}.crt"),
        "-days",
        "30",
        "-subj",
        subject,
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        *ext,
    )


def make_pki(folder: Path, extra_ips: tuple[str, ...] = (), clients: dict[str, tuple[str, str]] | None = None) -> Path:
    """Write ca, apiserver, the client certificates in CLIENTS (and `clients`) and the sa.key/sa.pub pair.

    `extra_ips` are more addresses the apiserver serves on (a node reaches it over a veth).
    """
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        *EC_KEY,
        "-keyout",
        str(folder / "ca.key"),
        "-out",
        str(folder / "ca.crt"),
        "-days",
        "30",
        "-subj",
        "/CN=mailrelay-controlplane-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _signed(
        folder,
        "apiserver",
        "/CN=kube-apiserver",
        [
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join((*SERVER_NAMES, *(f"IP:{ip}" for ip in extra_ips))),
        ],
    )
    for stem, (common_name, organisation) in {**CLIENTS, **(clients or {})}.items():
        _signed(
            folder,
            stem,
            _subject(common_name, organisation),
            ["keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
        )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(folder / "sa.key"))
    _openssl("ec", "-in", str(folder / "sa.key"), "-pubout", "-out", str(folder / "sa.pub"))
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return folder
