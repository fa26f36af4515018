"""ClusterSmarthosts through the operator's own Context on the in-memory API: the egress tier, its
tenants, the conditions of relays that may not use it, revocation and rotation, one pass at a time.

The queue is worked by hand (`settle`), so each test sees exactly which passes ran and what each
wrote. Every object the tests look at is the one the pass wrote (the in-memory API is its cache).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.api.names import CONFIG_HASH_ANNOTATION, KIND, SMARTHOST_KIND
from mailrelay.controller import smarthosts
from mailrelay.controller.context import Context
from mailrelay.controller.observe import Platform
from mailrelay.controller.settings import Settings
from mailrelay.controller.status import ready_condition
from mailrelay.gate import tenants as gate
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi
from support.one_pass import settle

OPNS = "mailrelay-system"
PASSWORD = "platform-password-Zq81"
ADMITTED = {"mail.example.com/smarthost": "company"}
EGRESS = "mailrelay-smarthost-company"


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    for name, labels in (("shop", ADMITTED), ("web", ADMITTED), ("other", {})):
        api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}})
    login_secret(api, PASSWORD)
    api.put(
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": SMARTHOST_KIND,
            "metadata": {"name": "company"},
            "spec": {
                "host": "smtp.example.net",
                "authSecretRef": {"name": "company-login"},
                "allowedNamespaces": [
                    {
                        "namespaceSelector": {"matchLabels": ADMITTED},
                        "senderDomains": ["{namespace}.apps.example.com"],
                        "limits": {"messagesPerMinute": 100},
                    }
                ],
            },
        }
    )
    for ns in ("shop", "web"):
        tenant(api, ns)
    return api


def login_secret(api: FakeApi, password: str) -> None:
    data = {"username": "relay@example.com", "password": password}
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "company-login", "namespace": OPNS},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def tenant(api: FakeApi, ns: str, **spec: Any) -> None:
    api.relay(ns, "mail", mailFromFQDN=f"{ns}.apps.example.com", smarthostRef={"name": "company"}, **spec)


@pytest.fixture
def context(api: FakeApi) -> Context:
    return Context(
        store=api,
        settings=Settings(postfix_image="registry.local/postfix:9"),
        leadership=Leadership.unconditional("test-replica"),
        clock=lambda: "2026-01-01T00:00:00Z",
        platform=Platform(OPNS, served=True),
    )


def status(api: FakeApi, kind: str, ns: str, name: str) -> dict[str, Any]:
    found = api.cached(kind, ns, name)
    assert found is not None
    return dict(found.get("status") or {})


def reason(api: FakeApi, ns: str) -> str:
    return str((ready_condition(status(api, KIND, ns, "mail")) or {}).get("reason"))


def tenants_file(api: FakeApi) -> gate.Document:
    config = api.cached("ConfigMap", OPNS, EGRESS)
    assert config is not None
    return gate.load(config["data"][gate.FILE])


def roll_out(api: FakeApi) -> None:
    for ns, name in ((OPNS, EGRESS), ("shop", "mailrelay-mail"), ("web", "mailrelay-mail")):
        if api.cached("Deployment", ns, name) is not None:
            api.roll_out("Deployment", ns, name)


def test_the_egress_tier_serves_two_tenants_each_with_its_own_login(api: FakeApi, context: Context) -> None:
    done = settle(context, smarthosts.key("company"))
    assert done[0] == smarthosts.key("company") and set(done[1:]) == {("shop", "mail"), ("web", "mail")}
    kinds = {(k, ns) for k, ns, _ in api.objects}
    for kind in ("NetworkPolicy", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Secret"):
        assert (kind, OPNS) in kinds, kind
    document = tenants_file(api)
    assert [(t.login, t.domains, t.messages_per_minute) for t in document.tenants] == [
        ("shop.mail", ("shop.apps.example.com",), 100),
        ("web.mail", ("web.apps.example.com",), 100),
    ]
    shown = status(api, SMARTHOST_KIND, "", "company")
    assert shown["tenants"] == [
        {"namespace": "shop", "relays": ["mail"], "senderDomains": ["shop.apps.example.com"]},
        {"namespace": "web", "relays": ["mail"], "senderDomains": ["web.apps.example.com"]},
    ]
    fingerprint = shown["fingerprint"]
    logins = set()
    for ns in ("shop", "web"):
        main_cf = (api.cached("ConfigMap", ns, "mailrelay-mail") or {})["data"]["main.cf"]
        assert f"relayhost = [{EGRESS}.{OPNS}.svc]:25" in main_cf
        assert f"smtp_tls_fingerprint_cert_match = {fingerprint}" in main_cf
        login = api.cached("Secret", ns, "mailrelay-mail-smarthost-login")
        assert login is not None and login["metadata"]["ownerReferences"][0]["kind"] == KIND
        logins.add(base64.b64decode(login["data"]["password"]))
        assert base64.b64decode(login["data"]["username"]).decode() == f"{ns}.mail"
    assert len(logins) == 2  # each relay its own password
    roll_out(api)
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"))
    assert present_reason(status(api, SMARTHOST_KIND, "", "company")) == cond.AVAILABLE
    assert reason(api, "shop") == reason(api, "web") == cond.AVAILABLE
    writes = len(api.writes)
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"))
    assert api.writes[writes:] == []  # settled: nothing is written again


def present_reason(shown: dict[str, Any]) -> str:
    return str((ready_condition(shown) or {}).get("reason"))


def test_a_namespace_outside_the_selector_gets_the_condition_and_no_child(api: FakeApi, context: Context) -> None:
    tenant(api, "other")
    settle(context, smarthosts.key("company"), ("other", "mail"))
    ready = ready_condition(status(api, KIND, "other", "mail")) or {}
    assert ready["reason"] == cond.SMARTHOST_NOT_ALLOWED and "namespace other" in ready["message"]
    assert api.kinds("other") == {KIND}  # not even its login Secret
    assert {"relay": "other/mail", "reason": cond.SMARTHOST_NOT_ALLOWED} in status(api, SMARTHOST_KIND, "", "company")[
        "denied"
    ]
    assert "other.mail" not in [t.login for t in tenants_file(api).tenants]


def test_a_relay_claiming_another_tenants_domain_is_refused_and_keeps_its_children(
    api: FakeApi, context: Context
) -> None:
    settle(context, smarthosts.key("company"))
    roll_out(api)
    before = {k: v for k, v in api.objects.items() if k[1] == "shop" and k[0] != KIND}
    api.edit(KIND, "shop", "mail", mailFromFQDN="web.apps.example.com")
    tenant_writes = len(api.writes)
    settle(context, ("shop", "mail"), smarthosts.key("company"))
    ready = ready_condition(status(api, KIND, "shop", "mail")) or {}
    assert ready["reason"] == cond.SENDER_DOMAIN_NOT_ALLOWED
    assert "web.apps.example.com is outside the sender domains allowed here (shop.apps.example.com)" in ready["message"]
    assert {k: v for k, v in api.objects.items() if k[1] == "shop" and k[0] != KIND} == before  # no child changed
    assert [w for w in api.writes[tenant_writes:] if w[1] != KIND and w[2] == "mail"] == []
    assert "shop.mail" not in [t.login for t in tenants_file(api).tenants]  # and the egress tier drops it
    api.edit(
        KIND, "shop", "mail", mailFromFQDN="shop.apps.example.com", rewrite={"keepDomains": ["x.shop.apps.example.com"]}
    )
    settle(context, ("shop", "mail"))
    assert reason(api, "shop") != cond.SENDER_DOMAIN_NOT_ALLOWED  # a subdomain of its own is fine


def test_revoking_a_namespace_cuts_it_off_in_one_pass_without_rolling_anything(api: FakeApi, context: Context) -> None:
    settle(context, smarthosts.key("company"))
    roll_out(api)
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"))
    egress_hash = egress_template_hash(api)
    shop_deployment = api.cached("Deployment", "shop", "mailrelay-mail")
    namespace = api.cached("Namespace", "", "shop") or {}
    namespace["metadata"]["labels"] = {}
    api.put(namespace)
    context.namespace_event("MODIFIED", namespace)
    done = settle(context)
    assert set(done) == {("shop", "mail"), smarthosts.key("company")}
    assert [t.login for t in tenants_file(api).tenants] == ["web.mail"]  # its login and domains: gone
    assert egress_template_hash(api) == egress_hash  # reloaded in place, not rolled
    assert reason(api, "shop") == cond.SMARTHOST_NOT_ALLOWED
    assert api.cached("Deployment", "shop", "mailrelay-mail") == shop_deployment  # its queue stays, held
    policy = api.cached("NetworkPolicy", OPNS, EGRESS) or {}
    [smtp] = [rule for rule in policy["spec"]["ingress"] if "from" in rule]
    assert {"matchLabels": ADMITTED} in [peer.get("namespaceSelector") for peer in smtp["from"]]


def egress_template_hash(api: FakeApi) -> str:
    deployment = api.cached("Deployment", OPNS, EGRESS) or {}
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


def test_rotating_the_platform_login_rolls_only_the_egress_tier(api: FakeApi, context: Context) -> None:
    settle(context, smarthosts.key("company"))
    roll_out(api)
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"))
    before, writes = egress_template_hash(api), len(api.writes)
    tenants_before = {ns: api.cached("Deployment", ns, "mailrelay-mail") for ns in ("shop", "web")}
    login_secret(api, "rotated-password-Pp02")
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"))
    assert egress_template_hash(api) != before
    written = {(kind, name) for verb, kind, name in api.writes[writes:] if verb != "status"}
    assert written == {("Deployment", EGRESS)}
    assert {ns: api.cached("Deployment", ns, "mailrelay-mail") for ns in ("shop", "web")} == tenants_before


def test_no_trace_of_the_platform_login_in_any_tenant_object_event_or_status(api: FakeApi, context: Context) -> None:
    tenant(api, "other")
    settle(context, smarthosts.key("company"))
    roll_out(api)
    settle(context, smarthosts.key("company"), ("shop", "mail"), ("web", "mail"), ("other", "mail"))
    secret = PASSWORD.encode()
    forms = {secret, base64.b64encode(secret)}
    for (kind, ns, name), obj in api.objects.items():
        text = json.dumps(obj).encode()
        if ns == OPNS and (kind, name) == ("Secret", "company-login"):
            continue  # the one place it is
        assert not any(form in text for form in forms), (kind, ns, name)
    for event in api.events:
        assert not any(form.decode() in json.dumps(event) for form in forms)


def test_a_deleted_relay_leaves_the_tenant_list(api: FakeApi, context: Context) -> None:
    settle(context, smarthosts.key("company"))
    body = api.cached(KIND, "web", "mail") or {}
    api.remove(KIND, "web", "mail")
    context.relay_event("DELETED", body)
    settle(context)
    assert [t.login for t in tenants_file(api).tenants] == ["shop.mail"]


def test_a_missing_smarthost_or_login_secret_says_so(api: FakeApi, context: Context) -> None:
    api.remove("Secret", OPNS, "company-login")
    settle(context, smarthosts.key("company"))
    shown = ready_condition(status(api, SMARTHOST_KIND, "", "company")) or {}
    assert shown["reason"] == cond.SECRET_NOT_FOUND and f"in the operator's namespace {OPNS}" in shown["message"]
    assert ("Deployment", OPNS, EGRESS) not in api.objects
    api.relay("web", "mail", mailFromFQDN="web.apps.example.com", smarthostRef={"name": "nobody"})
    settle(context, ("web", "mail"))
    assert reason(api, "web") == cond.SMARTHOST_NOT_FOUND
