"""cosign as the release uses it: a key pair, no transparency log, no Sigstore services at all.

Signatures and attestations are written in cosign's classic layout, `sha256-<digest>.sig` and `.att`
tags next to what they sign in the same repository (not cosign 3's new bundle format, whose fallback
tag `cosign copy` mangles): every cosign version and policy engine reads them, and `cosign copy` (or
any tool that copies tags) carries them to a mirror. Anyone holding the public key verifies them with
`--insecure-ignore-tlog` (nothing was written to Rekor). The signing config and trusted root that
cosign 3 would fetch from Sigstore's TUF repository are turned off, so signing and verifying never
leave the registry.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREDICATE = "spdxjson"  # cosign's name for https://spdx.dev/Document
OFFLINE = ("--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false")


class SigningError(RuntimeError):
    """cosign refused; the message has its output."""


@dataclass(frozen=True)
class Cosign:
    binary: str
    key: str  # a file, or env://VAR (cosign reads the password from COSIGN_PASSWORD)
    public_key: str
    plain_http: bool = False  # a registry on loopback
    env: dict[str, str] | None = None  # default: this process's

    def _run(self, *args: str, registry: bool = True) -> str:
        plain = ["--allow-insecure-registry", "--allow-http-registry"] if self.plain_http and registry else []
        command = [self.binary, *args, *plain]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SigningError(f"`cosign {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def check_pair(self, folder: Path) -> None:
        """Sign a file locally and verify it with the public key: a private key that is not the public
        key's pair (or a wrong password) fails before anything is pushed."""
        probe, signature = folder / "key-pair-probe", folder / "key-pair-probe.sig"
        probe.write_text("mailrelay-operator release key check\n")
        self._run(
            "sign-blob",
            "--yes",
            f"--key={self.key}",
            *OFFLINE,
            f"--output-signature={signature}",
            str(probe),
            registry=False,
        )
        try:
            self._run(
                "verify-blob",
                f"--key={self.public_key}",
                f"--signature={signature}",
                "--insecure-ignore-tlog=true",
                str(probe),
                registry=False,
            )
        except SigningError as error:
            raise SigningError(f"the signing key is not the pair of {self.public_key}: {error}") from None

    def sign(self, reference: str, recursive: bool) -> None:
        """Sign a digest reference (an index with `recursive`: each platform's manifest too)."""
        self._run(
            "sign",
            "--yes",
            f"--key={self.key}",
            *OFFLINE,
            *(["--recursive"] if recursive else []),
            reference,
        )

    def attest(self, reference: str, sbom: Path) -> None:
        """Attach the SBOM as a signed in-toto attestation of the manifest it describes."""
        self._run(
            "attest",
            "--yes",
            f"--key={self.key}",
            *OFFLINE,
            f"--type={PREDICATE}",
            f"--predicate={sbom}",
            reference,
        )

    def verify(self, reference: str, key: str | None = None) -> None:
        self._run(
            "verify", f"--key={key or self.public_key}", "--insecure-ignore-tlog=true", "--output=json", reference
        )

    def verify_attestation(self, reference: str, key: str | None = None) -> list[dict[str, Any]]:
        """The verified attestations' in-toto statements (their predicate is the SBOM)."""
        out = self._run(
            "verify-attestation",
            f"--key={key or self.public_key}",
            "--insecure-ignore-tlog=true",
            f"--type={PREDICATE}",
            "--output=json",
            reference,
        )
        return [_statement(json.loads(line)) for line in out.splitlines() if line.strip()]


def _statement(envelope: dict[str, Any]) -> dict[str, Any]:
    import base64

    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement
