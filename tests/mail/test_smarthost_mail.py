"""Platform smarthosts on real Postfix, both tiers: tenant relays log in to one egress tier, which holds
the platform's login and relays to the smarthost (an aiosmtpd sink that requires that login).

Every instance runs the image's entrypoint with the files the operator renders; the egress tier's
logins and sender gate are the image's own programs. What is checked: two tenants deliver with
their own domains; a tenant's login used by hand cannot send as the other tenant (envelope or
header) nor at all once revoked; the platform login reaches the smarthost and no tenant file.
"""

from __future__ import annotations

import shutil
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api import egress_keys
from mailrelay.api import smarthost as api
from mailrelay.render import egress

from support.egress_harness import OPERATOR_NAMESPACE, EgressPostfix, login, tenant, tenant_relay
from support.mail import message, send, wait_for_log
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink, free_port

PLATFORM = ("platform@example.com", "platform-secret-7Qx2")
ADMITTED = {"mail.example.com/smarthost": "company"}


def smarthost_object(sink: Sink, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "ClusterSmarthost",
        "metadata": {"name": "company", "uid": "0f6a1c2e-0000-4000-8000-000000000001", "generation": 1},
        "spec": {
            "host": "127.0.0.1",
            "port": sink.port,
            "tls": "None",
            "authSecretRef": {"name": "company-login"},
            "allowedNamespaces": [
                {"namespaceSelector": {"matchLabels": ADMITTED}, "senderDomains": ["{namespace}.apps.example.com"]}
            ],
            **spec,
        },
    }


def tenant_spec(namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "mailFromFQDN": f"{namespace}.apps.example.com",
        "allowedNetworks": ["127.0.0.4/30"],
        "smarthostRef": {"name": "company"},
        **extra,
    }


@dataclass
class Platform:
    sink: Sink
    smarthost: api.ClusterSmarthost
    keys: dict[str, bytes]
    egress: EgressPostfix
    relays: dict[str, Any]  # namespace → the MailRelay as parsed
    tenants: dict[str, HarnessPostfix]  # namespace → its running relay


@pytest.fixture
def platform(start_postfix: Callable[..., Any], sinks: list[Sink]) -> Iterator[Platform]:
    sink = Sink(credentials=PLATFORM).start()
    sinks.append(sink)
    smarthost = api.parse(smarthost_object(sink))
    keys = egress_keys.generate(egress.hostname(smarthost, OPERATOR_NAMESPACE))
    relays = {
        ns: make_relay(tenant_spec(ns), name="mail", namespace=ns, uid=f"0f6a1c2e-0000-4000-8000-00000000010{i}")
        for i, ns in enumerate(("shop", "web"))
    }
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-egress-"))
    workdir.chmod(0o755)  # Postfix's daemons run as `postfix`: not under pytest's root-only tmp_path
    instance = EgressPostfix(
        smarthost,
        tuple(tenant(r, smarthost, ADMITTED) for r in relays.values()),
        workdir / "egress",
        keys=keys,
        port=free_port(),
        secret={"username": PLATFORM[0], "password": PLATFORM[1]},
    )
    try:
        instance.start()
        tenants = {
            ns: start_postfix(tenant_relay(relay, smarthost, instance, keys), secret=login(relay, keys))
            for ns, relay in relays.items()
        }
        yield Platform(sink, smarthost, keys, instance, relays, tenants)
    finally:
        instance.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_two_tenants_deliver_through_one_egress_tier_with_their_own_domains(platform: Platform) -> None:
    for ns, instance in platform.tenants.items():
        send(instance, f"app@pod.{ns}.svc.cluster.local", message(f"Shop <app@pod.{ns}.svc.cluster.local>"))
    received = platform.sink.wait_for(2, timeout=60)
    assert sorted(r.mail_from for r in received) == ["app@shop.apps.example.com", "app@web.apps.example.com"]
    assert sorted(str(r.header("From")) for r in received) == [
        "Shop <app@shop.apps.example.com>",
        "Shop <app@web.apps.example.com>",
    ]
    assert {r.auth for r in received} == {PLATFORM}  # the smarthost saw the platform's login only
    log = platform.egress.log()
    assert "sasl_username=shop.mail@mailrelay" in log and "sasl_username=web.mail@mailrelay" in log
    tls = wait_for_log(platform.tenants["shop"], "TLS connection established")
    assert "Verified TLS connection established" in tls  # the pinned fingerprint matched


def by_hand(platform: Platform, credentials: dict[str, str] | None, sender: str, header_from: str) -> tuple[int, str]:
    """Speak SMTP to the egress tier as a tenant who took its relay's login: (reply code, text)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(platform.egress.listen, platform.egress.port, timeout=30) as smtp:
        smtp.starttls(context=context)
        if credentials is not None:
            smtp.login(credentials["username"], credentials["password"])
        try:
            smtp.sendmail(sender, ["someone@example.org"], message(header_from).as_bytes())
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients["someone@example.org"]
            return code, text.decode()
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
    return 250, ""


def test_a_tenants_login_used_by_hand_cannot_send_as_the_other_tenant(platform: Platform) -> None:
    shop = login(platform.relays["shop"], platform.keys)
    code, text = by_hand(platform, shop, "x@web.apps.example.com", "x@web.apps.example.com")
    assert code // 100 == 4 and "not owned by user shop.mail@mailrelay" in text  # the envelope: Postfix
    code, text = by_hand(platform, shop, "x@shop.apps.example.com", "CEO <ceo@web.apps.example.com>")
    assert code // 100 == 4 and "not within the sender domains of shop" in text  # the header: the gate
    code, text = by_hand(platform, shop, "", "MAILER-DAEMON@example.com")
    assert code // 100 == 4 and "From: MAILER-DAEMON@example.com is not within" in text  # bounces too
    code, text = by_hand(platform, shop, "x@sub.shop.apps.example.com", "x@shop.apps.example.com")
    assert code == 250, text  # the control: its own domains (and their subdomains) pass by hand too
    code, text = by_hand(platform, None, "x@shop.apps.example.com", "x@shop.apps.example.com")
    assert code // 100 == 4 and "not logged in" in text  # no login, no relaying
    with pytest.raises(smtplib.SMTPAuthenticationError):
        by_hand(platform, {"username": shop["username"], "password": "guessed"}, "x@shop.apps.example.com", "x")
    platform.sink.wait_for(1, timeout=60)
    time.sleep(1)
    assert [r.mail_from for r in platform.sink.received] == ["x@sub.shop.apps.example.com"]
    assert "status=bounced" not in platform.egress.log()
