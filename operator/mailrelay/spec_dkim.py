"""`spec.dkim`: which domain the relay signs for, with which selector and key.

The signing domain must be mailFromFQDN or a parent of it. Every sender the relay rewrites lands on
mailFromFQDN, so this is the one choice that signs all rewritten mail, and a parent domain still
aligns with a From at mailFromFQDN under DMARC's relaxed alignment. A kept domain alone is refused:
it would leave the rewritten mail, the bulk of what the relay sends, silently unsigned. Senders in
a kept domain are signed when that domain lies inside the signing domain, and sent unsigned
otherwise (their own domain's DKIM is their owner's to set up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from mailrelay import grammar
from mailrelay.checker import Checker

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
    if selector is not None and not SELECTOR_RE.match(selector):
        check.fail("spec.dkim.selector", f"{selector!r} must be one DNS label of at most 52 lower-case letters, "
                   "digits and '-' (it becomes <selector>._domainkey.<domain>)")
    domain = mail_from_fqdn
    if dkim.get("domain") is not None:
        domain = check.hostname("spec.dkim.domain", dkim["domain"], need_dot=True)
        if domain is not None and domain != dkim["domain"]:
            check.fail("spec.dkim.domain", f"{dkim['domain']!r} must be written in lower case")
        elif domain is not None and mail_from_fqdn is not None and not in_domain(mail_from_fqdn, domain):
            check.fail("spec.dkim.domain", f"{domain!r} must be mailFromFQDN ({mail_from_fqdn}) or a parent domain "
                       "of it, so that every rewritten sender is signed")
    key_type = dkim.get("keyType", DEFAULT_KEY_TYPE)
    if key_type not in KEY_TYPES:
        check.fail("spec.dkim.keyType", f"must be one of {', '.join(KEY_TYPES)}, got {key_type!r}")
    bits = dkim.get("rsaBits", DEFAULT_RSA_BITS)
    if isinstance(bits, bool) or bits not in RSA_SIZES:
        check.fail("spec.dkim.rsaBits", f"must be one of {', '.join(map(str, RSA_SIZES))}, got {bits!r}")
    secret: str | None = None
    if dkim.get("keySecretRef") is not None:
        ref = check.mapping("spec.dkim.keySecretRef", dkim["keySecretRef"], {"name"})
        secret = check.string("spec.dkim.keySecretRef.name", ref.get("name")) if ref is not None else None
        if secret is not None and (not grammar.full(grammar.HOSTNAME, secret) or len(secret) > 253):
            check.fail("spec.dkim.keySecretRef.name", f"{secret!r} is not a valid Secret name")
    if len(check.problems) > before or selector is None or domain is None:
        return None
    return DkimSpec(domain=domain, selector=selector, key_type=key_type, rsa_bits=bits, key_secret=secret)
