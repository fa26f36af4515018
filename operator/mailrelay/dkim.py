"""DKIM keys: generate, check, and turn into the DNS TXT records a domain owner publishes.

Keys are handled as bytes only here and in the Secret; nothing in this module logs, and its
errors describe a key without quoting it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailrelay.spec_dkim import DkimSpec

# Secret keys, one PEM private key each; the same names as the key files OpenDKIM reads.
KEY_FILES = {"rsa": "rsa.private", "ed25519": "ed25519.private"}
MIN_RSA_BITS, MAX_RSA_BITS = 1024, 4096
TXT_STRING_MAX = 255  # one character-string in a TXT record (RFC 1035 3.3)
TTL = 3600


class KeyProblem(ValueError):
    """A key that cannot be used; the message names the Secret key, never its content."""


@dataclass(frozen=True)
class Record:
    name: str  # <selector>._domainkey.<domain>
    value: str  # the TXT data as one string, for DNS providers that split it themselves
    algorithm: str

    @property
    def zone_value(self) -> str:
        """The TXT data in zone-file form: quoted strings of at most 255 bytes, joined by a space."""
        return " ".join(f'"{part}"' for part in split(self.value))

    def as_status(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "value": self.value,
                "zone": f"{self.name}. {TTL} IN TXT {self.zone_value}"}


def split(value: str) -> list[str]:
    """Cut the TXT data into character-strings; receivers concatenate them without a separator."""
    data = value.encode("ascii")
    return [data[i:i + TXT_STRING_MAX].decode("ascii") for i in range(0, len(data), TXT_STRING_MAX)] or [""]


def generate(algorithm: str, rsa_bits: int) -> bytes:
    """A new private key, PEM (PKCS#8) without a passphrase, as OpenDKIM reads it."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(65537, rsa_bits) if algorithm == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_data(algorithm: str, pem: bytes, where: str) -> str:
    """The `p=` value for a private key, or KeyProblem when it is not a usable key of that algorithm."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyProblem(f"{where} is not an unencrypted PEM private key") from None
    if algorithm == "rsa":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyProblem(f"{where} must be an RSA private key")
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise KeyProblem(f"{where} has {key.key_size} bits; DKIM needs {MIN_RSA_BITS} to {MAX_RSA_BITS}")
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyProblem(f"{where} must be an Ed25519 private key")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()  # RFC 8463: the bare 32-byte key, not SubjectPublicKeyInfo


def needed(dkim: DkimSpec) -> dict[str, str]:
    """Algorithm → Secret key for every key this relay signs with."""
    return {algorithm: KEY_FILES[algorithm] for algorithm in dkim.selectors}


def records(dkim: DkimSpec, data: dict[str, bytes], secret: str) -> list[Record]:
    """The TXT record of each key in `data` (Secret key → PEM); KeyProblem for a missing or bad one."""
    found = []
    for algorithm, file in needed(dkim).items():
        pem = data.get(file)
        if not pem:
            raise KeyProblem(f"Secret {secret} lacks the key {file} ({algorithm} private key, PEM)")
        public = public_key_data(algorithm, pem, f"Secret {secret} key {file}")
        found.append(Record(f"{dkim.selectors[algorithm]}._domainkey.{dkim.domain}",
                            f"v=DKIM1; k={algorithm}; p={public}", f"{algorithm}-sha256"))
    return found


def decode_secret(secret: dict[str, Any]) -> dict[str, bytes]:
    """A Secret's `data` as bytes; a value that is not base64 becomes empty (reported as missing)."""
    result = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            result[key] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            result[key] = b""
    return result


def version(dkim: DkimSpec, data: dict[str, bytes]) -> str:
    """A digest of the keys in use, so a new key rolls the relay pods (the key itself is not in it)."""
    digest = hashlib.sha256()
    for file in needed(dkim).values():
        digest.update(file.encode() + b"\0" + hashlib.sha256(data.get(file, b"")).digest())
    return digest.hexdigest()[:16]
