"""DKIM helpers for the mail tier: a signing relay, its keys, and dkimpy's verdict checked against the
TXT records the status publishes (served through dkimpy's DNS hook, so no DNS query leaves the machine).
"""

from __future__ import annotations

import email
from typing import Any

import dkim as dkimpy

from mailrelay.api import dkim
from mailrelay.api.spec import MailRelay

from support.mail import relay_spec
from support.samples import make_relay
from support.smtp_sink import Received, Sink

SIGNING_DOMAIN = "example.com"  # a parent of mailFromFQDN: relaxed DMARC alignment still holds
KEPT_INSIDE = "billing.example.com"  # a kept domain inside the signing domain: signed
KEPT_OUTSIDE = "corp.example.org"  # a kept domain outside it: sent unsigned


def dkim_relay(sink: Sink, key_type: str = "RSA") -> MailRelay:
    return make_relay(
        relay_spec(
            sink,
            rewrite={"keepDomains": [KEPT_INSIDE, KEPT_OUTSIDE]},
            dkim={"domain": SIGNING_DOMAIN, "selector": "s1", "keyType": key_type},
        )
    )


def keys_for(relay: MailRelay) -> dict[str, bytes]:
    assert relay.spec.dkim is not None
    return {file: dkim.generate(algorithm, 2048) for algorithm, file in dkim.needed(relay.spec.dkim).items()}


def dns_from_status(relay: MailRelay, keys: dict[str, bytes]) -> Any:
    """dkimpy's DNS hook answering from the records the status shows, in their zone-file form."""
    assert relay.spec.dkim is not None
    zone = {r.name + ".": r.zone_value for r in dkim.records(relay.spec.dkim, keys, "test")}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        value = zone.get(name.decode())
        if value is None:
            return None
        # A resolver joins a TXT record's character-strings with nothing in between (RFC 7208 3.3 does
        # the same for SPF); here the quoted zone form is parsed back the same way.
        return "".join(part for part in value.split('"')[1::2]).encode()

    return lookup


def signatures(received: Received) -> list[str]:
    return [v for k, v in email_headers(received.data) if k.lower() == "dkim-signature"]


def email_headers(data: bytes) -> list[tuple[str, str]]:
    return list(email.message_from_bytes(data).items())


def verify_all(data: bytes, dns: Any) -> list[bool]:
    """dkimpy's verdict on each signature; a body hash mismatch counts as a failure, as at a receiver."""
    count = len([1 for k, _ in email_headers(data) if k.lower() == "dkim-signature"])
    results = []
    for i in range(count):
        try:
            results.append(bool(dkimpy.DKIM(data).verify(idx=i, dnsfunc=dns)))
        except dkimpy.DKIMException:
            results.append(False)
    return results
