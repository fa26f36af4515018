"""A ClusterSmarthost egress tier's own key material, kept by the operator in one Secret of its namespace.

`tls.key`/`tls.crt`: a P-256 key and a self-signed certificate for the egress Service's name. No CA
is involved: tenant relays pin the certificate by its SHA-256 fingerprint (Postfix's `fingerprint`
TLS level), which the operator writes into their main.cf. `login-key`: 32 random bytes (base64),
the HMAC key tenant relays' passwords are derived from (mailrelay.gate.tenants). Generated once;
deleting the Secret makes new ones, which gives every tenant relay a new password and a new pin
(they roll) and the egress tier a new certificate (it rolls).
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl

from mailrelay.gate.tenants import LOGIN_KEY, decode_key

TLS_CERT, TLS_KEY = "tls.crt", "tls.key"
KEYS = (TLS_CERT, TLS_KEY, LOGIN_KEY)
VALID_DAYS = 3650  # pinned, not chained: its expiry is not what protects it


def generate(hostname: str) -> dict[str, bytes]:
    """New key material for an egress tier whose Service is `hostname`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return {
        TLS_KEY: key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        TLS_CERT: certificate.public_bytes(serialization.Encoding.PEM),
        LOGIN_KEY: base64.b64encode(os.urandom(32)),
    }


def fingerprint(certificate: bytes) -> str:
    """The certificate's SHA-256 fingerprint as Postfix writes it (AB:CD:...)."""
    der = ssl.PEM_cert_to_DER_cert(certificate.decode("ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def problem(data: dict[str, bytes]) -> str | None:
    """Why the Secret's keys are not usable (never quoting them), or None."""
    missing = [key for key in KEYS if not data.get(key)]
    if missing:
        return f"lacks {', '.join(missing)}"
    try:
        fingerprint(data[TLS_CERT])
        decode_key(data[LOGIN_KEY])
    except (ValueError, UnicodeDecodeError):
        return f"has an unusable {TLS_CERT} or {LOGIN_KEY}"
    if b"PRIVATE KEY-----" not in data[TLS_KEY]:
        return f"has no PEM private key in {TLS_KEY}"
    return None
