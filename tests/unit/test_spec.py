"""Parsing a MailRelay: defaults, normalisation, and a clear error naming the field for each fault."""

from __future__ import annotations

from typing import Any

import pytest

from mailrelay.api import guardrails
from mailrelay.api.dkim import DkimSpec
from mailrelay.api.guardrails import ClientPeer, Egress, LabelSelector, Limits
from mailrelay.api.spec import DEFAULT_NETWORKS, MailRelaySpec, Relay, RewriteRule, SpecError, parse
from mailrelay.version import RELEASED_POSTFIX_IMAGE

from support.invalid_specs import BASE_SPEC as VALID
from support.invalid_specs import INVALID, Invalid
from support.samples import make_relay, relay_object


def parse_spec(spec: Any) -> MailRelaySpec:
    """The spec part alone, parsed from a relay with valid metadata."""
    return parse(relay_object(spec)).spec


def test_defaults_fill_everything_but_the_fqdn() -> None:
    relay = parse(relay_object(VALID))
    spec = relay.spec
    assert (relay.name, relay.namespace, relay.generation) == ("relay", "apps", 1)
    assert spec.mail_from_fqdn == "apps.example.com"
    assert spec.allowed_networks == DEFAULT_NETWORKS
    assert spec.message_size_limit == 10_240_000
    assert spec.replicas == 1
    assert spec.image == RELEASED_POSTFIX_IMAGE
    assert spec.relay is None
    assert (spec.service.name, spec.service.port) == ("mail", 25)
    assert spec.keep_domains == () and spec.rules == ()


def test_full_spec_is_parsed_and_normalised() -> None:
    spec = parse_spec(
        {
            "mailFromFQDN": "Apps.Example.COM",
            "rewrite": {
                "keepDomains": ["Corp.Example.org"],
                "rules": [{"pattern": "(.*)@legacy-host", "replacement": "$1-legacy@apps.example.com"}],
            },
            "relay": {"host": "SMTP.example.net", "authSecretRef": {"name": "smarthost"}},
            "allowedNetworks": ["10.42.0.0/16", "fd00::/8"],
            "messageSizeLimitBytes": 2048,
            "replicas": 0,
            "image": "registry.local/postfix:1",
            "resources": {"requests": {"cpu": "50m", "memory": 67108864}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "mail", "operator": "Exists", "effect": "NoSchedule"}],
            "service": {"name": "smtp", "port": 2525},
        }
    )
    assert spec.mail_from_fqdn == "apps.example.com"
    assert spec.keep_domains == ("corp.example.org",)
    assert spec.rules == (RewriteRule("(.*)@legacy-host", "$1-legacy@apps.example.com"),)
    assert spec.relay == Relay(host="smtp.example.net", port=587, tls="Encrypt", auth_secret="smarthost")
    assert spec.allowed_networks == ("10.42.0.0/16", "fd00::/8")
    assert spec.resources == {"requests": {"cpu": "50m", "memory": "67108864"}}
    assert spec.replicas == 0
    assert (spec.service.name, spec.service.port) == ("smtp", 2525)


def test_wrapper_on_465_and_ipv6_smarthost_are_fine() -> None:
    relay = parse_spec({"mailFromFQDN": "a.example", "relay": {"host": "2001:DB8::1", "port": 465, "tls": "Wrapper"}})
    assert relay.relay == Relay(host="2001:db8::1", port=465, tls="Wrapper")


def test_dkim_defaults_and_a_parent_signing_domain() -> None:
    spec = parse_spec({"mailFromFQDN": "Apps.Example.com", "dkim": {}})
    assert spec.dkim == DkimSpec(domain="apps.example.com", selector="mail", key_type="RSA", rsa_bits=2048)
    assert spec.dkim.selectors == {"rsa": "mail"}
    spec = parse_spec(
        {
            "mailFromFQDN": "apps.example.com",
            "dkim": {
                "domain": "example.com",
                "selector": "relay1",
                "keyType": "Ed25519",
                "rsaBits": 4096,
                "keySecretRef": {"name": "dkim-keys"},
            },
        }
    )
    assert spec.dkim == DkimSpec(
        domain="example.com", selector="relay1", key_type="Ed25519", rsa_bits=4096, key_secret="dkim-keys"
    )
    assert spec.dkim.selectors == {"rsa": "relay1", "ed25519": "relay1-ed25519"}
    assert parse_spec({"mailFromFQDN": "a.example.com"}).dkim is None


@pytest.mark.parametrize("case", [r for r in INVALID if r.by_operator], ids=lambda r: r.id)
def test_invalid_spec_names_the_field_and_the_fault(case: Invalid) -> None:
    with pytest.raises(SpecError) as error:
        parse(case.obj)
    assert any(case.operator in problem for problem in error.value.problems), error.value.problems


def test_there_are_at_least_25_invalid_cases() -> None:
    named = [r for r in INVALID if r.by_operator and r.operator]
    assert len(named) >= 25
    tenant = [r for r in named if isinstance(r.obj["spec"], dict) and guardrails.FIELDS & set(r.obj["spec"])]
    assert len(tenant) >= 15  # the tenant guardrails
    assert len([r for r in named if r.by_crd and r.crd]) >= 25  # what the CRD says is checked too (test_crd.py)


def test_a_rule_may_use_literal_parentheses_and_bounded_repetition() -> None:
    spec = parse_spec(
        {
            **VALID,
            "rewrite": {"rules": [{"pattern": "(a)?@x|[(]b[)]{2}@y|\\(c\\)@z", "replacement": "$1@apps.example.com"}]},
        }
    )
    assert spec.rules[0].anchored == "^(a)?@x$|^[(]b[)]{2}@y$|^\\(c\\)@z$"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as error:
        parse(relay_object({"mailFromFQDN": "nodot", "replicas": -1, "service": {"port": 0}}))
    assert [p.split(":")[0] for p in error.value.problems] == [
        "spec.mailFromFQDN",
        "spec.replicas",
        "spec.service.port",
    ]


def test_guardrail_defaults_protect_without_slowing_an_app() -> None:
    tenant = parse(relay_object(VALID)).spec.guardrails
    assert tenant.network_policy is True and tenant.same_namespace is True
    assert tenant.clients == () and tenant.egress == Egress()
    assert tenant.allow_domains == ()
    assert tenant.limits == Limits(messages_per_minute=600, recipients_per_minute=3000, concurrent_connections=50)


def test_guardrails_are_parsed_and_normalised() -> None:
    tenant = parse_spec(
        {
            "mailFromFQDN": "a.example",
            "clients": [
                {
                    "namespaceSelector": {"matchLabels": {"team": "web", "env": "prod"}},
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["shop", "cart"]}
                        ]
                    },
                },
                {"namespaceSelector": {}},
            ],
            "egress": {"restricted": True, "smarthostNetworks": ["203.0.113.10/32", "2001:db8::/64"]},
            "limits": {"messagesPerMinute": 0, "concurrentConnections": 5},
            "recipients": {"allowDomains": ["Example.ORG", "test.example.net"]},
        }
    ).guardrails
    [first, everyone] = tenant.clients
    assert first.namespace_selector == LabelSelector(match_labels=(("env", "prod"), ("team", "web")))
    assert first.pod_selector == LabelSelector(match_expressions=(("app.kubernetes.io/name", "In", ("shop", "cart")),))
    assert everyone == ClientPeer(namespace_selector=LabelSelector(), pod_selector=None)
    assert tenant.egress == Egress(restricted=True, smarthost_networks=("203.0.113.10/32", "2001:db8::/64"))
    assert tenant.limits == Limits(messages_per_minute=0, recipients_per_minute=3000, concurrent_connections=5)
    assert tenant.allow_domains == ("example.org", "test.example.net")


@pytest.mark.parametrize(
    ("obj_change", "message"),
    [
        ({"kind": "Deployment"}, "apiVersion/kind: must be mailrelay.dev/v1alpha1 MailRelay"),
        ({"metadata": {"name": "Relay"}}, "metadata.name: must be a DNS-1035 label"),
        ({"metadata": {"name": "r" * 51}}, "of at most 50 characters"),
        ({"metadata": None}, "metadata: must be an object with a name, got null"),
        ({"metadata": "hello"}, "metadata: must be an object with a name, got a string"),
        ({"metadata": {"name": "relay", "namespace": "Apps\n"}}, "metadata.namespace: must be a DNS-1123 label"),
    ],
)
def test_invalid_object_metadata(obj_change: dict[str, Any], message: str) -> None:
    obj = relay_object(VALID)
    obj.update(obj_change)
    with pytest.raises(SpecError) as error:
        parse(obj)
    assert any(message in p for p in error.value.problems), error.value.problems


def test_an_integral_float_for_rsa_bits_is_the_integer() -> None:
    """JSON has one number type and the API server stores 2048.0 for an integer field."""
    relay = make_relay({"mailFromFQDN": "apps.example.com", "dkim": {"rsaBits": 2048.0}})
    assert relay.spec.dkim is not None and relay.spec.dkim.rsa_bits == 2048
    assert type(relay.spec.dkim.rsa_bits) is int
    with pytest.raises(SpecError, match="rsaBits: must be one of"):
        make_relay({"mailFromFQDN": "apps.example.com", "dkim": {"rsaBits": 2048.5}})
