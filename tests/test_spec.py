"""Parsing a MailRelay: defaults, normalisation, and a clear error naming the field for each fault."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mailrelay.api import guardrails
from mailrelay.api.dkim import DkimSpec
from mailrelay.api.guardrails import ClientPeer, Egress, LabelSelector, Limits
from mailrelay.api.spec import DEFAULT_NETWORKS, MailRelaySpec, Relay, RewriteRule, SpecError, parse
from mailrelay.version import RELEASED_POSTFIX_IMAGE

from conftest import relay_object
from invalid_specs import REFUSED_BY_BOTH


def parse_spec(spec: Any) -> MailRelaySpec:
    """The spec part alone, parsed from a relay with valid metadata."""
    return parse(relay_object(spec)).spec


VALID = {"mailFromFQDN": "apps.example.com"}


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


def with_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    spec.update(changes)
    return spec


INVALID: list[tuple[str, dict[str, Any] | None, str]] = [
    ("missing fqdn", {}, "spec.mailFromFQDN: is required"),
    ("fqdn not a string", with_spec(mailFromFQDN=42), "spec.mailFromFQDN: must be a string, got an integer"),
    ("fqdn without dot", with_spec(mailFromFQDN="localhost"), "must be a fully qualified domain name"),
    ("fqdn with underscore", with_spec(mailFromFQDN="my_app.example.com"), "is not a valid host name"),
    ("fqdn too long", with_spec(mailFromFQDN=("a" * 60 + ".") * 5 + "com"), "must be at most 253 characters"),
    ("fqdn with newline", with_spec(mailFromFQDN="a.example.com\nrelayhost = evil"), "is not a valid host name"),
    ("fqdn label starts with dash", with_spec(mailFromFQDN="-a.example.com"), "is not a valid host name"),
    ("empty fqdn", with_spec(mailFromFQDN=""), "spec.mailFromFQDN: must not be empty"),
    ("spec not an object", None, "spec: must be an object, got null"),
    ("unknown field", with_spec(mailFromFqdn="x.example"), "spec.mailFromFqdn: unknown field"),
    (
        "keepDomains not a list",
        with_spec(rewrite={"keepDomains": "a.example"}),
        "spec.rewrite.keepDomains: must be a list, got a string",
    ),
    (
        "keepDomain with at-sign",
        with_spec(rewrite={"keepDomains": ["user@a.example"]}),
        "spec.rewrite.keepDomains[0]: 'user@a.example' is not a valid host name",
    ),
    (
        "duplicate keepDomain",
        with_spec(rewrite={"keepDomains": ["a.example", "A.example"]}),
        "spec.rewrite.keepDomains[1]: duplicate entry 'a.example'",
    ),
    (
        "rule without replacement",
        with_spec(rewrite={"rules": [{"pattern": "x"}]}),
        "spec.rewrite.rules[0].replacement: is required",
    ),
    (
        "rule pattern does not compile",
        with_spec(rewrite={"rules": [{"pattern": "[z-a]@x", "replacement": "b@c.d"}]}),
        "spec.rewrite.rules[0].pattern: is not a valid POSIX extended regular expression",
    ),
    (
        "rule pattern with an unclosed group",
        with_spec(rewrite={"rules": [{"pattern": "(a", "replacement": "b@c.d"}]}),
        "spec.rewrite.rules[0].pattern: parentheses must balance",
    ),
    (
        "rule pattern breaks out of the delimiters",
        with_spec(rewrite={"rules": [{"pattern": "a/ x@evil.example\n/b", "replacement": "b@c.d"}]}),
        "spec.rewrite.rules[0].pattern: 'a/ x@evil.example\\n/b' is not a pattern",
    ),
    (
        "rule pattern with unescaped slash",
        with_spec(rewrite={"rules": [{"pattern": "a/b", "replacement": "b@c.d"}]}),
        "contains an unescaped '/' at position 1",
    ),
    (
        "rule pattern ends in backslash",
        with_spec(rewrite={"rules": [{"pattern": "ab\\", "replacement": "b@c.d"}]}),
        "must not end with a lone backslash",
    ),
    (
        "rule pattern is Python, not POSIX",
        with_spec(rewrite={"rules": [{"pattern": "(?:a)", "replacement": "b@c.d"}]}),
        "has nothing to repeat before the '?' at position 1",
    ),
    (
        "replacement with newline",
        with_spec(rewrite={"rules": [{"pattern": "a", "replacement": "b@c.d\nx"}]}),
        "spec.rewrite.rules[0].replacement: 'b@c.d\\nx' is not a replacement: only printable ASCII",
    ),
    (
        "replacement refers to a missing group",
        with_spec(rewrite={"rules": [{"pattern": "(a)", "replacement": "$2@c.d"}]}),
        "refers to group $2 but the pattern has 1",
    ),
    (
        "replacement with a stray dollar",
        with_spec(rewrite={"rules": [{"pattern": "a", "replacement": "$x@c.d"}]}),
        "a '$' must start a group reference",
    ),
    ("relay without host", with_spec(relay={"port": 587}), "spec.relay.host: is required when relay is set"),
    (
        "relay port out of range",
        with_spec(relay={"host": "smtp.example.net", "port": 70000}),
        "spec.relay.port: must be from 1 to 65535, got 70000",
    ),
    (
        "relay port a string",
        with_spec(relay={"host": "smtp.example.net", "port": "587"}),
        "spec.relay.port: must be an integer, got a string",
    ),
    (
        "relay port a boolean",
        with_spec(relay={"host": "smtp.example.net", "port": True}),
        "spec.relay.port: must be an integer, got a boolean",
    ),
    (
        "unknown tls level",
        with_spec(relay={"host": "smtp.example.net", "tls": "STARTTLS"}),
        "spec.relay.tls: must be one of None, May, Encrypt, Wrapper, got 'STARTTLS'",
    ),
    (
        "wrapper without 465",
        with_spec(relay={"host": "smtp.example.net", "tls": "Wrapper"}),
        "spec.relay.tls: Wrapper (SMTPS) needs port 465, got port 587",
    ),
    (
        "bad secret name",
        with_spec(relay={"host": "smtp.example.net", "authSecretRef": {"name": "My_Secret"}}),
        "spec.relay.authSecretRef.name: 'My_Secret' is not a valid Secret name",
    ),
    ("relay host with space", with_spec(relay={"host": "smtp example"}), "spec.relay.host: 'smtp example' is not"),
    (
        "network not a CIDR",
        with_spec(allowedNetworks=["10.0.0.0/33"]),
        "spec.allowedNetworks[0]: '10.0.0.0/33' is not a CIDR network",
    ),
    ("network without prefix", with_spec(allowedNetworks=["10.1.2.3"]), "'10.1.2.3' needs a prefix length"),
    ("network with host bits", with_spec(allowedNetworks=["10.1.2.3/8"]), "has host bits set"),
    ("open relay v4", with_spec(allowedNetworks=["0.0.0.0/0"]), "would make an open relay"),
    ("open relay v6", with_spec(allowedNetworks=["::/0"]), "would make an open relay"),
    ("no networks", with_spec(allowedNetworks=[]), "must list at least one network"),
    ("duplicate network", with_spec(allowedNetworks=["10.0.0.0/8", "10.0.0.0/8"]), "duplicate network '10.0.0.0/8'"),
    ("size too small", with_spec(messageSizeLimitBytes=10), "spec.messageSizeLimitBytes: must be from 1024"),
    ("negative replicas", with_spec(replicas=-1), "spec.replicas: must be from 0 to 100, got -1"),
    ("image with space", with_spec(image="postfix latest"), "spec.image: 'postfix latest' is not an image reference"),
    (
        "bad quantity",
        with_spec(resources={"limits": {"memory": "lots"}}),
        "spec.resources.limits.memory: 'lots' is not a non-negative Kubernetes quantity",
    ),
    ("unknown resources key", with_spec(resources={"limit": {}}), "spec.resources.limit: unknown field"),
    (
        "node selector value not a string",
        with_spec(nodeSelector={"zone": 1}),
        "spec.nodeSelector.zone: must be a string",
    ),
    (
        "bad toleration operator",
        with_spec(tolerations=[{"operator": "In"}]),
        "spec.tolerations[0].operator: must be Equal or Exists",
    ),
    ("service name not DNS-1035", with_spec(service={"name": "1mail"}), "spec.service.name: '1mail' is not a DNS-1035"),
    ("service port zero", with_spec(service={"port": 0}), "spec.service.port: must be from 1 to 65535, got 0"),
    ("dkim not an object", with_spec(dkim="yes"), "spec.dkim: must be an object, got a string"),
    ("dkim unknown field", with_spec(dkim={"key": "x"}), "spec.dkim.key: unknown field"),
    ("dkim selector with dot", with_spec(dkim={"selector": "a.b"}), "spec.dkim.selector: 'a.b' must be one DNS label"),
    ("dkim selector upper case", with_spec(dkim={"selector": "Mail"}), "spec.dkim.selector: 'Mail' must be one"),
    ("dkim selector too long", with_spec(dkim={"selector": "s" * 53}), "spec.dkim.selector:"),
    (
        "dkim domain unrelated",
        with_spec(dkim={"domain": "example.org"}),
        "spec.dkim.domain: 'example.org' must be mailFromFQDN (apps.example.com) or a parent domain",
    ),
    ("dkim domain a subdomain", with_spec(dkim={"domain": "eu.apps.example.com"}), "or a parent domain of it"),
    ("dkim domain suffix but no parent", with_spec(dkim={"domain": "ps.example.com"}), "or a parent domain of it"),
    (
        "dkim domain a kept domain only",
        with_spec(rewrite={"keepDomains": ["corp.example.org"]}, dkim={"domain": "corp.example.org"}),
        "or a parent domain of it",
    ),
    ("dkim domain a top-level domain", with_spec(dkim={"domain": "com"}), "must be a fully qualified domain name"),
    ("dkim domain upper case", with_spec(dkim={"domain": "Example.com"}), "must be written in lower case"),
    ("dkim domain with underscore", with_spec(dkim={"domain": "_dmarc.example.com"}), "is not a valid host name"),
    ("dkim key type", with_spec(dkim={"keyType": "DSA"}), "spec.dkim.keyType: must be one of RSA, Ed25519"),
    ("dkim rsa bits", with_spec(dkim={"rsaBits": 1024}), "spec.dkim.rsaBits: must be one of 2048, 3072, 4096"),
    ("dkim rsa bits boolean", with_spec(dkim={"rsaBits": True}), "spec.dkim.rsaBits: must be one of"),
    (
        "dkim secret ref without name",
        with_spec(dkim={"keySecretRef": {}}),
        "spec.dkim.keySecretRef.name: must be a string, got null",
    ),
    ("dkim secret ref bad name", with_spec(dkim={"keySecretRef": {"name": "My_Key"}}), "is not a valid Secret name"),
    (
        "dkim secret ref extra field",
        with_spec(dkim={"keySecretRef": {"name": "k", "key": "x"}}),
        "spec.dkim.keySecretRef.key: unknown field",
    ),
    # Refused by the operator only: the CRD cannot know the Public Suffix List, run regcomp() or
    # compare quantities (tests/test_api_validation.py lists them as known gaps).
    ("fqdn is a public suffix", with_spec(mailFromFQDN="co.uk"), "'co.uk' is a public suffix"),
    ("keepDomain public suffix", with_spec(rewrite={"keepDomains": ["co.uk"]}), "'co.uk' is a public suffix"),
    (
        "keepDomain private public suffix",
        with_spec(rewrite={"keepDomains": ["github.io"]}),
        "'github.io' is a public suffix",
    ),
    (
        "rule with an empty alternative",
        with_spec(rewrite={"rules": [{"pattern": "a|", "replacement": "a@a.example"}]}),
        "must not have an empty alternative",
    ),
    (
        "rule back-reference to a later group",
        with_spec(rewrite={"rules": [{"pattern": "\\1(a)", "replacement": "a@a.example"}]}),
        "must not use the back-reference \\1",
    ),
    (
        "request above limit",
        with_spec(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        "spec.resources.requests.memory: 1Gi is more than the limit 512Mi",
    ),
    # Pod knobs (api/pod.py).
    ("pull secret without name", with_spec(imagePullSecrets=[{}]), "spec.imagePullSecrets[0].name: is required"),
    (
        "pull secret as a string",
        with_spec(imagePullSecrets=["mirror"]),
        "spec.imagePullSecrets[0]: must be an object, got a string",
    ),
    (
        "pull secret bad name",
        with_spec(imagePullSecrets=[{"name": "Mirror_Creds"}]),
        "spec.imagePullSecrets[0].name: 'Mirror_Creds' is not a valid Secret name",
    ),
    ("pull secret twice", with_spec(imagePullSecrets=[{"name": "m"}, {"name": "m"}]), "duplicate Secret 'm'"),
    (
        "too many pull secrets",
        with_spec(imagePullSecrets=[{"name": f"s{i}"} for i in range(17)]),
        "spec.imagePullSecrets: must have at most 16 entries",
    ),
    ("affinity unknown field", with_spec(affinity={"nodeAfinity": {}}), "spec.affinity.nodeAfinity: unknown field"),
    (
        "affinity term without topologyKey",
        with_spec(
            affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}
        ),
        "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: is required",
    ),
    (
        "affinity weight too high",
        with_spec(
            affinity={
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 101, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                    ]
                }
            }
        ),
        "must be from 1 to 100",
    ),
    (
        "node affinity bad operator",
        with_spec(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Equals"}]}]
                    }
                }
            }
        ),
        "operator: must be one of 'In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt', got 'Equals'",
    ),
    (
        "spread without topologyKey",
        with_spec(topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]),
        "spec.topologySpreadConstraints[0].topologyKey: is required",
    ),
    (
        "spread skew zero",
        with_spec(
            topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
        ),
        "spec.topologySpreadConstraints[0].maxSkew: must be from 1 to any, got 0",
    ),
    (
        "spread skew a string",
        with_spec(
            topologySpreadConstraints=[{"maxSkew": "1", "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
        ),
        "spec.topologySpreadConstraints[0].maxSkew: must be an integer, got a string",
    ),
    (
        "spread unknown policy",
        with_spec(topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never"}]),
        "whenUnsatisfiable: must be one of 'DoNotSchedule', 'ScheduleAnyway', got 'Never'",
    ),
    (
        "spread not a list",
        with_spec(topologySpreadConstraints={"maxSkew": 1}),
        "spec.topologySpreadConstraints: must be a list, got an object",
    ),
    (
        "priority class with capitals",
        with_spec(priorityClassName="Mail-Critical"),
        "spec.priorityClassName: 'Mail-Critical' is not a valid PriorityClass name",
    ),
    (
        "pod label on the selector",
        with_spec(podLabels={"app.kubernetes.io/instance": "other"}),
        "spec.podLabels.app.kubernetes.io/instance: 'app.kubernetes.io/instance' is set by the operator",
    ),
    ("pod label in our prefix", with_spec(podLabels={"mailrelay.dev/x": "y"}), "is set by the operator"),
    ("pod label key with space", with_spec(podLabels={"cost center": "mail"}), "the name must be 1 to 63 letters"),
    (
        "pod label key bad prefix",
        with_spec(podLabels={"Example.com/team": "mail"}),
        "the prefix before '/' must be a DNS subdomain",
    ),
    ("pod label key name too long", with_spec(podLabels={"a" * 64: "x"}), "the name must be 1 to 63 letters"),
    ("pod label value too long", with_spec(podLabels={"team": "x" * 64}), "is not a label value"),
    ("pod label value with slash", with_spec(podLabels={"team": "a/b"}), "'a/b' is not a label value"),
    (
        "pod label value not a string",
        with_spec(podLabels={"replicas": 2}),
        "spec.podLabels.replicas: must be a string, got an integer",
    ),
    (
        "pod annotation overrides the config hash",
        with_spec(podAnnotations={"mailrelay.dev/config-hash": "x"}),
        "spec.podAnnotations.mailrelay.dev/config-hash: 'mailrelay.dev/config-hash' is set by the operator",
    ),
    ("pod annotation key empty", with_spec(podAnnotations={"": "x"}), "the name must be 1 to 63 letters"),
    (
        "pod annotation value too long",
        with_spec(podAnnotations={"note": "x" * 4097}),
        "spec.podAnnotations.note: must be at most 4096 characters",
    ),
    (
        "pod annotations not an object",
        with_spec(podAnnotations=["a=b"]),
        "spec.podAnnotations: must be an object of strings, got a list",
    ),
    (
        "too many pod labels",
        with_spec(podLabels={f"k{i}": "v" for i in range(33)}),
        "spec.podLabels: must have at most 32 entries, got 33",
    ),
    (
        "queue storage size a number",
        with_spec(queue={"storage": {"size": 1024}}),
        "spec.queue.storage.size: must be a string, got an integer",
    ),
    ("queue unknown field", with_spec(queue={"persistent": True}), "spec.queue.persistent: unknown field"),
    ("queue storage size with a newline", with_spec(queue={"storage": {"size": "1Gi\n"}}), "is not a storage quantity"),
    ("keepDomain with a final newline", with_spec(rewrite={"keepDomains": ["0\n"]}), "is not a valid host name"),
    (
        "queue storage unknown field",
        with_spec(queue={"storage": {"size": "1Gi", "accessModes": ["RWX"]}}),
        "spec.queue.storage.accessModes: unknown field",
    ),
    # Tenant guardrails.
    (
        "networkPolicy.enabled not a boolean",
        with_spec(networkPolicy={"enabled": "no"}),
        "spec.networkPolicy.enabled: must be true or false, got 'no'",
    ),
    ("clients not a list", with_spec(clients="web"), "spec.clients: must be a list, got a string"),
    ("too many clients", with_spec(clients=[{"podSelector": {}}] * 21), "spec.clients: must have at most 20 entries"),
    ("client without a selector", with_spec(clients=[{}]), "spec.clients[0]: needs a namespaceSelector, a podSelector"),
    (
        "a podSelector alone adds nothing",
        with_spec(clients=[{"podSelector": {"matchLabels": {"app": "web"}}}]),
        "spec.clients[0]: a podSelector alone selects pods of the relay's own namespace, which are all admitted",
    ),
    (
        "own namespace off without the policy",
        with_spec(networkPolicy={"enabled": False, "sameNamespace": False}),
        "spec.networkPolicy.sameNamespace: false needs enabled: true",
    ),
    (
        "own namespace off and no clients",
        with_spec(networkPolicy={"sameNamespace": False}),
        "spec.clients: must admit some pods when spec.networkPolicy.sameNamespace is false",
    ),
    (
        "client with an ipBlock",
        with_spec(clients=[{"ipBlock": {"cidr": "10.0.0.0/8"}}]),
        "spec.clients[0].ipBlock: unknown field",
    ),
    (
        "label key with a space",
        with_spec(clients=[{"namespaceSelector": {"matchLabels": {"my team": "a"}}}]),
        "spec.clients[0].namespaceSelector.matchLabels: 'my team' is not a label key",
    ),
    (
        "label key name too long",
        with_spec(clients=[{"namespaceSelector": {"matchLabels": {"example.com/" + "k" * 64: "a"}}}]),
        "is not a label key",
    ),
    (
        "label key prefix too long",
        with_spec(
            clients=[
                {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": ("a" * 63 + ".") * 4 + "com/team", "operator": "Exists"}]
                    }
                }
            ]
        ),
        "matchExpressions[0].key: 'aaaa",
    ),
    (
        "label value with a slash",
        with_spec(clients=[{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a/b"}}}]),
        "spec.clients[0].podSelector.matchLabels.app: 'a/b' is not a label value",
    ),
    (
        "unknown selector operator",
        with_spec(
            clients=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Contains", "values": ["a"]}]}}
            ]
        ),
        "spec.clients[0].namespaceSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists",
    ),
    (
        "In without values",
        with_spec(clients=[{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]),
        "matchExpressions[0].values: must not be empty for operator In",
    ),
    (
        "Exists with values",
        with_spec(
            clients=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]}}
            ]
        ),
        "matchExpressions[0].values: must be empty for operator Exists",
    ),
    (
        "egress restricted without the policy",
        with_spec(networkPolicy={"enabled": False}, egress={"restricted": True}),
        "spec.egress.restricted: needs spec.networkPolicy.enabled",
    ),
    (
        "smarthostNetworks without restricted",
        with_spec(egress={"smarthostNetworks": ["203.0.113.10/32"]}),
        "spec.egress.smarthostNetworks: only takes effect with spec.egress.restricted: true",
    ),
    (
        "smarthostNetworks not a CIDR",
        with_spec(egress={"restricted": True, "smarthostNetworks": ["smtp.example.net"]}),
        "spec.egress.smarthostNetworks[0]: 'smtp.example.net' is not a CIDR network",
    ),
    (
        "negative message limit",
        with_spec(limits={"messagesPerMinute": -1}),
        "spec.limits.messagesPerMinute: must be from 0 to 1000000, got -1",
    ),
    (
        "too many connections",
        with_spec(limits={"concurrentConnections": 101}),
        "spec.limits.concurrentConnections: must be from 0 to 100, got 101",
    ),
    (
        "recipient limit a boolean",
        with_spec(limits={"recipientsPerMinute": True}),
        "spec.limits.recipientsPerMinute: must be an integer, got a boolean",
    ),
    ("unknown limit", with_spec(limits={"messagesPerHour": 10}), "spec.limits.messagesPerHour: unknown field"),
    (
        "empty allowDomains",
        with_spec(recipients={"allowDomains": []}),
        "spec.recipients.allowDomains: must list at least one domain",
    ),
    (
        "allowDomain with at-sign",
        with_spec(recipients={"allowDomains": ["ops@example.org"]}),
        "spec.recipients.allowDomains[0]: 'ops@example.org' is not a valid host name",
    ),
    (
        "duplicate allowDomain",
        with_spec(recipients={"allowDomains": ["example.org", "EXAMPLE.org"]}),
        "spec.recipients.allowDomains[1]: duplicate entry 'example.org'",
    ),
    ("allowDomain with a regexp", with_spec(recipients={"allowDomains": [".*"]}), "is not a valid host name"),
] + [(name, with_spec(**changes), message) for name, changes, _, message in REFUSED_BY_BOTH]


@pytest.mark.parametrize(("spec", "message"), [(s, m) for _, s, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_spec_names_the_field_and_the_fault(spec: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse(relay_object(spec))  # type: ignore[arg-type]
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_there_are_at_least_25_invalid_cases() -> None:
    assert len(INVALID) >= 25
    assert sum(1 for _, spec, _ in INVALID if spec and guardrails.FIELDS & set(spec)) >= 15  # the tenant guardrails
    assert len(REFUSED_BY_BOTH) >= 25  # each also refused by the CRD (tests/test_crd.py)


def test_a_rule_may_use_literal_parentheses_and_bounded_repetition() -> None:
    spec = parse_spec(
        with_spec(
            rewrite={"rules": [{"pattern": "(a)?@x|[(]b[)]{2}@y|\\(c\\)@z", "replacement": "$1@apps.example.com"}]}
        )
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
