"""DKIM in the API: `spec.dkim` (which domain, selector and key), and the keys and their DNS records.

The signing domain must be mailFromFQDN or a parent of it. Every sender the relay rewrites lands on
mailFromFQDN, so this is the one choice that signs all rewritten mail, and a parent domain still
aligns with a From at mailFromFQDN under DMARC's relaxed alignment. A kept domain alone is refused:
it would leave the rewritten mail, the bulk of what the relay sends, silently unsigned. Senders in
a kept domain are signed when that domain lies inside the signing domain, and sent unsigned
otherwise (their own domain's DKIM is their owner's to set up).

Keys are handled as bytes only here and in the Secret; nothing in this module logs, and its
errors describe a key without quoting it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from mailrelay.api.checker import Checker, quote

KeyType = Literal["RSA", "Ed25519"]
KEY_TYPES: tuple[str, ...] = ("RSA", "Ed25519")
RSA_SIZES: tuple[int, ...] = (2048, 3072, 4096)
DEFAULT_SELECTOR = "mail"
DEFAULT_KEY_TYPE: KeyType = "RSA"
DEFAULT_RSA_BITS = 2048
ED25519_SELECTOR_SUFFIX = "-ed25519"  # an Ed25519 key needs its own DNS name beside the RSA one
FIELDS = {"selector", "domain", "keyType", "rsaBits", "keySecretRef"}
SELECTOR_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


@dataclass(frozen=True)
class DkimSpec:
    domain: str
    selector: str = DEFAULT_SELECTOR
    key_type: KeyType = DEFAULT_KEY_TYPE
    rsa_bits: int = DEFAULT_RSA_BITS
    key_secret: str | None = None  # bring-your-own key; None: the operator generates and owns one

    @property
    def selectors(self) -> dict[str, str]:
        """Key algorithm ("rsa", "ed25519") → selector; Ed25519 relays sign with both keys."""
        if self.key_type == "Ed25519":
            return {"rsa": self.selector, "ed25519": self.selector + ED25519_SELECTOR_SUFFIX}
        return {"rsa": self.selector}


def in_domain(host: str, domain: str) -> bool:
    """`host` is `domain` or a subdomain of it (both lower case)."""
    return host == domain or host.endswith("." + domain)


def parse_dkim(check: Checker, raw: Any, mail_from_fqdn: str | None) -> DkimSpec | None:
    dkim = check.mapping("spec.dkim", raw, FIELDS)
    if dkim is None:
        return None
    before = len(check.problems)
    selector = check.string("spec.dkim.selector", dkim.get("selector", DEFAULT_SELECTOR))
    if selector is not None and not SELECTOR_RE.fullmatch(selector):
        check.fail(
            "spec.dkim.selector",
            f"{quote(selector)} must be one DNS label of at most 52 lower-case letters, "
            "digits and '-' (it becomes <selector>._domainkey.<domain>)",
        )
    domain = _domain(check, dkim.get("domain"), mail_from_fqdn)
    key_type = dkim.get("keyType", DEFAULT_KEY_TYPE)
    if key_type not in KEY_TYPES:
        check.fail("spec.dkim.keyType", f"must be one of {', '.join(KEY_TYPES)}, got {quote(key_type)}")
    bits = dkim.get("rsaBits", DEFAULT_RSA_BITS)
    if isinstance(bits, float) and bits.is_integer():
        bits = int(bits)  # JSON has one number type: the API server takes 2048.0 for an integer field
    if isinstance(bits, bool) or bits not in RSA_SIZES:
        check.fail("spec.dkim.rsaBits", f"must be one of {', '.join(map(str, RSA_SIZES))}, got {quote(bits)}")
    secret = None
    if dkim.get("keySecretRef") is not None:
        secret = check.secret_ref("spec.dkim.keySecretRef", dkim["keySecretRef"])
    if len(check.problems) > before or selector is None or domain is None:
        return None
    return DkimSpec(domain=domain, selector=selector, key_type=key_type, rsa_bits=bits, key_secret=secret)


def _domain(check: Checker, raw: Any, mail_from_fqdn: str | None) -> str | None:
    """spec.dkim.domain (default: mailFromFQDN): in lower case, and mailFromFQDN or a parent of it."""
    if raw is None:
        return mail_from_fqdn
    domain = check.hostname("spec.dkim.domain", raw, need_dot=True)
    if domain is not None and domain != raw:
        check.fail("spec.dkim.domain", f"{quote(raw)} must be written in lower case")
    elif domain is not None and mail_from_fqdn is not None and not in_domain(mail_from_fqdn, domain):
        check.fail(
            "spec.dkim.domain",
            f"{quote(domain)} must be mailFromFQDN ({mail_from_fqdn}) or a parent domain "
            "of it, so that every rewritten sender is signed",
        )
    return domain


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
        return {
            "name": self.name,
            "algorithm": self.algorithm,
            "value": self.value,
            "zone": f"{self.name}. {TTL} IN TXT {self.zone_value}",
        }


def split(value: str) -> list[str]:
    """Cut the TXT data into character-strings; receivers concatenate them without a separator."""
    data = value.encode("ascii")
    return [data[i : i + TXT_STRING_MAX].decode("ascii") for i in range(0, len(data), TXT_STRING_MAX)] or [""]


def generate(algorithm: str, rsa_bits: int) -> bytes:
    """A new private key, PEM (PKCS#8) without a passphrase, as OpenDKIM reads it."""
    # cryptography is imported where keys are made or read: most relays never sign, and the operator
    # should not carry its ~9 MiB for them.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(65537, rsa_bits) if algorithm == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_data(algorithm: str, pem: bytes, where: str) -> str:
    """The `p=` value for a private key, or KeyProblem when it is not a usable key of that algorithm."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyProblem(f"{where} is not an unencrypted PEM private key") from None
    if algorithm == "rsa":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyProblem(f"{where} must be an RSA private key")
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise KeyProblem(f"{where} has {key.key_size} bits; DKIM needs {MIN_RSA_BITS} to {MAX_RSA_BITS}")
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
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
        found.append(
            Record(
                f"{dkim.selectors[algorithm]}._domainkey.{dkim.domain}",
                f"v=DKIM1; k={algorithm}; p={public}",
                f"{algorithm}-sha256",
            )
        )
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
