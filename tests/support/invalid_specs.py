"""Every invalid MailRelay the tests know, in one table: who refuses it, and what each one says.

A row is refused by the operator (`spec.parse`), by the CRD (its OpenAPI schema and CEL rules, as the
API server enforces them), or by both. tests/unit/test_spec.py checks the operator's message,
tests/unit/test_crd.py the CRD's with the offline checker (support/crd_schema.py), and
tests/apiserver/test_api_validation.py feeds every row to the real kube-apiserver. A row refused by
the operator only names the gap in the CRD; the API server test fails when the CRD closes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from support.samples import relay_object

BASE_SPEC: dict[str, Any] = {"mailFromFQDN": "apps.example.com"}
BOTH: Literal["both"] = "both"
OPERATOR: Literal["operator"] = "operator"
CRD: Literal["crd"] = "crd"


@dataclass(frozen=True)
class Invalid:
    id: str
    obj: dict[str, Any]
    by: Literal["both", "operator", "crd"]
    operator: str = ""  # part of one of the operator's problems ("": any problem)
    crd: str = ""  # part of one of the CRD's errors as support/crd_schema.check reports them ("": any)
    offline: bool = (
        True  # False: the API server refuses it (strict field validation, list types), the offline check cannot
    )
    gap: str = ""  # refused by the operator only: why the CRD does not refuse it

    @property
    def by_operator(self) -> bool:
        return self.by in (BOTH, OPERATOR)

    @property
    def by_crd(self) -> bool:
        return self.by in (BOTH, CRD)


def spec(**changes: Any) -> dict[str, Any]:
    """A relay whose spec is the valid base with these fields replaced."""
    return relay_object({**BASE_SPEC, **changes})


def changed(**changes: Any) -> dict[str, Any]:
    """A valid relay with fields set by path: `spec__relay={...}`, `metadata__name="x"`."""
    obj = relay_object(dict(BASE_SPEC))
    for dotted, value in changes.items():
        target = obj
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return obj


INVALID: list[Invalid] = [
    Invalid(
        "missing fqdn",
        relay_object({}),
        BOTH,
        operator="spec.mailFromFQDN: is required",
        crd="'mailFromFQDN' is a required property",
    ),
    Invalid(
        "fqdn not a string", spec(mailFromFQDN=42), BOTH, operator="spec.mailFromFQDN: must be a string, got an integer"
    ),
    Invalid(
        "fqdn without dot",
        spec(mailFromFQDN="localhost"),
        BOTH,
        operator="must be a fully qualified domain name",
        crd="does not match",
    ),
    Invalid("fqdn with underscore", spec(mailFromFQDN="my_app.example.com"), BOTH, operator="is not a valid host name"),
    Invalid(
        "fqdn too long",
        spec(mailFromFQDN=("a" * 60 + ".") * 5 + "com"),
        BOTH,
        operator="must be at most 253 characters",
    ),
    Invalid(
        "fqdn with newline",
        spec(mailFromFQDN="a.example.com\nrelayhost = evil"),
        BOTH,
        operator="is not a valid host name",
    ),
    Invalid(
        "fqdn label starts with dash", spec(mailFromFQDN="-a.example.com"), BOTH, operator="is not a valid host name"
    ),
    Invalid("empty fqdn", spec(mailFromFQDN=""), BOTH, operator="spec.mailFromFQDN: must not be empty"),
    Invalid("spec not an object", relay_object(None), BOTH, operator="spec: must be an object, got null"),
    Invalid(
        "unknown field",
        spec(mailFromFqdn="x.example"),
        BOTH,
        operator="spec.mailFromFqdn: unknown field",
        offline=False,
    ),
    Invalid(
        "keepDomains not a list",
        spec(rewrite={"keepDomains": "a.example"}),
        BOTH,
        operator="spec.rewrite.keepDomains: must be a list, got a string",
    ),
    Invalid(
        "keepDomain with at-sign",
        spec(rewrite={"keepDomains": ["user@a.example"]}),
        BOTH,
        operator="spec.rewrite.keepDomains[0]: 'user@a.example' is not a valid host name",
    ),
    Invalid(
        "duplicate keepDomain",
        spec(rewrite={"keepDomains": ["a.example", "A.example"]}),
        OPERATOR,
        operator="spec.rewrite.keepDomains[1]: duplicate entry 'a.example'",
        gap="no case-insensitive uniqueness rule on keepDomains",
    ),
    Invalid(
        "rule without replacement",
        spec(rewrite={"rules": [{"pattern": "x"}]}),
        BOTH,
        operator="spec.rewrite.rules[0].replacement: is required",
    ),
    Invalid(
        "rule pattern does not compile",
        spec(rewrite={"rules": [{"pattern": "[z-a]@x", "replacement": "b@c.d"}]}),
        OPERATOR,
        operator="spec.rewrite.rules[0].pattern: is not a valid POSIX extended regular expression",
        gap="CEL cannot compile a POSIX regular expression",
    ),
    Invalid(
        "rule pattern with an unclosed group",
        spec(rewrite={"rules": [{"pattern": "(a", "replacement": "b@c.d"}]}),
        BOTH,
        operator="spec.rewrite.rules[0].pattern: parentheses must balance",
    ),
    Invalid(
        "rule pattern breaks out of the delimiters",
        spec(rewrite={"rules": [{"pattern": "a/ x@evil.example\n/b", "replacement": "b@c.d"}]}),
        BOTH,
        operator="spec.rewrite.rules[0].pattern: 'a/ x@evil.example\\n/b' is not a pattern",
    ),
    Invalid(
        "rule pattern with unescaped slash",
        spec(rewrite={"rules": [{"pattern": "a/b", "replacement": "b@c.d"}]}),
        BOTH,
        operator="contains an unescaped '/' at position 1",
    ),
    Invalid(
        "rule pattern ends in backslash",
        spec(rewrite={"rules": [{"pattern": "ab\\", "replacement": "b@c.d"}]}),
        BOTH,
        operator="must not end with a lone backslash",
    ),
    Invalid(
        "rule pattern is Python, not POSIX",
        spec(rewrite={"rules": [{"pattern": "(?:a)", "replacement": "b@c.d"}]}),
        BOTH,
        operator="has nothing to repeat before the '?' at position 1",
    ),
    Invalid(
        "replacement with newline",
        spec(rewrite={"rules": [{"pattern": "a", "replacement": "b@c.d\nx"}]}),
        BOTH,
        operator="spec.rewrite.rules[0].replacement: 'b@c.d\\nx' is not a replacement: only printable ASCII",
    ),
    Invalid(
        "replacement refers to a missing group",
        spec(rewrite={"rules": [{"pattern": "(a)", "replacement": "$2@c.d"}]}),
        OPERATOR,
        operator="refers to group $2 but the pattern has 1",
        gap="no rule relates replacement groups to pattern groups",
    ),
    Invalid(
        "replacement with a stray dollar",
        spec(rewrite={"rules": [{"pattern": "a", "replacement": "$x@c.d"}]}),
        OPERATOR,
        operator="a '$' must start a group reference",
        gap="no pattern on replacement for '$' references",
    ),
    # Rewrite patterns whose cost in Postfix's cleanup is not bounded by their length (issue 23).
    Invalid(
        "rule back-references from the issue",
        spec(rewrite={"rules": [{"pattern": "(.*)(.*)(.*)(.*)\\4\\3\\2\\1@x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not use the back-reference \\4",
        crd="no back-reference",
    ),
    Invalid(
        "rule back-reference to an earlier group",
        spec(rewrite={"rules": [{"pattern": "([a-z])\\1-(.*)@(.*)", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not use the back-reference \\1",
        crd="no back-reference",
    ),
    Invalid(
        "rule interval of an interval from the issue",
        spec(rewrite={"rules": [{"pattern": "(.{0,255}){0,255}x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="repeats up to 9 times at most",
        crd="no back-reference",
    ),
    Invalid(
        "rule interval above nine",
        spec(rewrite={"rules": [{"pattern": "[0-9]{10}@x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="repeats up to 9 times at most in an interval, got {10}",
        crd="no back-reference",
    ),
    Invalid(
        "rule interval with an upper bound",
        spec(rewrite={"rules": [{"pattern": "(.{0,9}.{0,9}.{0,9})@x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not give an interval an upper bound, got {0,9} (at position 2)",
        crd="no {m,n}",
    ),
    Invalid(
        "rule with nine optional parts",
        spec(rewrite={"rules": [{"pattern": "(a?b?c?d?e?f?g?h?i?)@x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must have at most 8 '?' (optional parts, a literal '?' included), got 9",
        crd="pattern must have at most 8 '?'",
    ),
    Invalid(
        "rule interval after a group",
        spec(rewrite={"rules": [{"pattern": "(ab){2}@x", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not repeat a group (at position 4)",
        crd="no back-reference",
    ),
    Invalid(
        "rule plus after a group",
        spec(rewrite={"rules": [{"pattern": "([a-z]+\\.)+example\\.com", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not repeat a group (at position 10)",
        crd="no back-reference",
    ),
    Invalid(
        "rule nested plus",
        spec(rewrite={"rules": [{"pattern": "((((a?a?a?)+)+)+)+", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not repeat a group (at position 11)",
        crd="no back-reference",
    ),
    Invalid(
        "rule repeated group that glibc loops on",
        spec(rewrite={"rules": [{"pattern": "(b*|a|c*)*@x", "replacement": "$1@a.example"}]}),
        BOTH,
        operator="must not repeat a group (at position 9)",
        crd="no repeated group",
    ),
    Invalid(
        "rule starred group",
        spec(rewrite={"rules": [{"pattern": "([a-z]+\\.)*example\\.com", "replacement": "a@a.example"}]}),
        BOTH,
        operator="repeat characters instead, e.g. [a-z.]*",
        crd="no repeated group",
    ),
    Invalid(
        "rule repeated optional group",
        spec(rewrite={"rules": [{"pattern": "(x)?*@y", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not repeat a group (at position 4)",
        crd="no repeated group",
    ),
    Invalid(
        "rule starts with a repetition",
        spec(rewrite={"rules": [{"pattern": "*@y", "replacement": "a@a.example"}]}),
        BOTH,
        operator="has nothing to repeat before the '*' at position 0",
        crd="no repeated group",
    ),
    Invalid(
        "rule interval after an interval",
        spec(rewrite={"rules": [{"pattern": "a{2}{3}", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must put {3} (at position 4) right after one character",
        crd="no back-reference",
    ),
    Invalid(
        "rule interval after a star",
        spec(rewrite={"rules": [{"pattern": "a*{2}", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must put {2} (at position 2)",
        crd="no back-reference",
    ),
    Invalid(
        "rule plus after a plus",
        spec(rewrite={"rules": [{"pattern": "a++", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must put + (at position 2)",
        crd="no back-reference",
    ),
    Invalid(
        "rule plus after an interval",
        spec(rewrite={"rules": [{"pattern": "a{9}+", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must put + (at position 4)",
        crd="no back-reference",
    ),
    Invalid(
        "rule bare opening brace",
        spec(rewrite={"rules": [{"pattern": "a{x}@y", "replacement": "a@a.example"}]}),
        BOTH,
        operator="has a '{' that starts no interval",
        crd="no back-reference",
    ),
    Invalid(
        "rule interval without a lower count",
        spec(rewrite={"rules": [{"pattern": "a{,5}", "replacement": "a@a.example"}]}),
        BOTH,
        operator="has a '{' that starts no interval",
        crd="no back-reference",
    ),
    Invalid(
        "rule bare closing brace",
        spec(rewrite={"rules": [{"pattern": "a}@y", "replacement": "a@a.example"}]}),
        BOTH,
        operator="has a '}' that closes no interval",
        crd="no back-reference",
    ),
    Invalid(
        "relay without host", spec(relay={"port": 587}), BOTH, operator="spec.relay.host: is required when relay is set"
    ),
    Invalid(
        "relay port out of range",
        spec(relay={"host": "smtp.example.net", "port": 70000}),
        BOTH,
        operator="spec.relay.port: must be from 1 to 65535, got 70000",
    ),
    Invalid(
        "relay port a string",
        spec(relay={"host": "smtp.example.net", "port": "587"}),
        BOTH,
        operator="spec.relay.port: must be an integer, got a string",
    ),
    Invalid(
        "relay port a boolean",
        spec(relay={"host": "smtp.example.net", "port": True}),
        BOTH,
        operator="spec.relay.port: must be an integer, got a boolean",
    ),
    Invalid(
        "unknown tls level",
        spec(relay={"host": "smtp.example.net", "tls": "STARTTLS"}),
        BOTH,
        operator="spec.relay.tls: must be one of None, May, Encrypt, Wrapper, got 'STARTTLS'",
    ),
    Invalid(
        "wrapper without 465",
        spec(relay={"host": "smtp.example.net", "tls": "Wrapper"}),
        BOTH,
        operator="spec.relay.tls: Wrapper (SMTPS) needs port 465, got port 587",
        crd="tls Wrapper (SMTPS) needs port 465",
    ),
    Invalid(
        "bad secret name",
        spec(relay={"host": "smtp.example.net", "authSecretRef": {"name": "My_Secret"}}),
        BOTH,
        operator="spec.relay.authSecretRef.name: 'My_Secret' is not a valid Secret name",
    ),
    Invalid(
        "relay host with space",
        spec(relay={"host": "smtp example"}),
        BOTH,
        operator="spec.relay.host: 'smtp example' is not",
    ),
    Invalid(
        "network not a CIDR",
        spec(allowedNetworks=["10.0.0.0/33"]),
        BOTH,
        operator="spec.allowedNetworks[0]: '10.0.0.0/33' is not a CIDR network",
    ),
    Invalid(
        "network without prefix", spec(allowedNetworks=["10.1.2.3"]), BOTH, operator="'10.1.2.3' needs a prefix length"
    ),
    Invalid(
        "network with host bits",
        spec(allowedNetworks=["10.1.2.3/8"]),
        OPERATOR,
        operator="has host bits set",
        gap="no rule against host bits in allowedNetworks",
    ),
    Invalid(
        "open relay v4",
        spec(allowedNetworks=["0.0.0.0/0"]),
        BOTH,
        operator="would make an open relay",
        crd="would make an open relay",
    ),
    Invalid(
        "open relay v6",
        spec(allowedNetworks=["::/0"]),
        BOTH,
        operator="would make an open relay",
        crd="would make an open relay",
    ),
    Invalid(
        "no networks",
        spec(allowedNetworks=[]),
        BOTH,
        operator="must list at least one network",
        crd="should be non-empty",
    ),
    Invalid(
        "duplicate network",
        spec(allowedNetworks=["10.0.0.0/8", "10.0.0.0/8"]),
        BOTH,
        operator="duplicate network '10.0.0.0/8'",
        offline=False,
    ),
    Invalid(
        "size too small", spec(messageSizeLimitBytes=10), BOTH, operator="spec.messageSizeLimitBytes: must be from 1024"
    ),
    Invalid(
        "negative replicas",
        spec(replicas=-1),
        BOTH,
        operator="spec.replicas: must be from 0 to 100, got -1",
        crd="is less than the minimum of 0",
    ),
    Invalid(
        "image with space",
        spec(image="postfix latest"),
        BOTH,
        operator="spec.image: 'postfix latest' is not an image reference",
    ),
    Invalid(
        "bad quantity",
        spec(resources={"limits": {"memory": "lots"}}),
        BOTH,
        operator="spec.resources.limits.memory: 'lots' is not a non-negative Kubernetes quantity",
    ),
    Invalid(
        "unknown resources key",
        spec(resources={"limit": {}}),
        BOTH,
        operator="spec.resources.limit: unknown field",
        offline=False,
    ),
    Invalid(
        "node selector value not a string",
        spec(nodeSelector={"zone": 1}),
        BOTH,
        operator="spec.nodeSelector.zone: must be a string",
    ),
    Invalid(
        "bad toleration operator",
        spec(tolerations=[{"operator": "In"}]),
        BOTH,
        operator="spec.tolerations[0].operator: must be Equal or Exists",
    ),
    Invalid(
        "service name not DNS-1035",
        spec(service={"name": "1mail"}),
        BOTH,
        operator="spec.service.name: '1mail' is not a DNS-1035",
    ),
    Invalid(
        "service port zero",
        spec(service={"port": 0}),
        BOTH,
        operator="spec.service.port: must be from 1 to 65535, got 0",
    ),
    Invalid("dkim not an object", spec(dkim="yes"), BOTH, operator="spec.dkim: must be an object, got a string"),
    Invalid(
        "dkim unknown field", spec(dkim={"key": "x"}), BOTH, operator="spec.dkim.key: unknown field", offline=False
    ),
    Invalid(
        "dkim selector with dot",
        spec(dkim={"selector": "a.b"}),
        BOTH,
        operator="spec.dkim.selector: 'a.b' must be one DNS label",
        crd="does not match",
    ),
    Invalid(
        "dkim selector upper case",
        spec(dkim={"selector": "Mail"}),
        BOTH,
        operator="spec.dkim.selector: 'Mail' must be one",
    ),
    Invalid(
        "dkim selector too long",
        spec(dkim={"selector": "s" * 53}),
        BOTH,
        operator="spec.dkim.selector:",
        crd="is too long",
    ),
    Invalid(
        "dkim domain unrelated",
        spec(dkim={"domain": "example.org"}),
        BOTH,
        operator="spec.dkim.domain: 'example.org' must be mailFromFQDN (apps.example.com) or a parent domain",
        crd="dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    Invalid(
        "dkim domain a subdomain",
        spec(dkim={"domain": "eu.apps.example.com"}),
        BOTH,
        operator="or a parent domain of it",
        crd="dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    Invalid(
        "dkim domain suffix but no parent",
        spec(dkim={"domain": "ps.example.com"}),
        BOTH,
        operator="or a parent domain of it",
        crd="dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    Invalid(
        "dkim domain a kept domain only",
        spec(rewrite={"keepDomains": ["corp.example.org"]}, dkim={"domain": "corp.example.org"}),
        BOTH,
        operator="or a parent domain of it",
    ),
    Invalid(
        "dkim domain a top-level domain",
        spec(dkim={"domain": "com"}),
        BOTH,
        operator="must be a fully qualified domain name",
        crd="does not match",
    ),
    Invalid(
        "dkim domain upper case",
        spec(dkim={"domain": "Example.com"}),
        BOTH,
        operator="must be written in lower case",
        crd="does not match",
    ),
    Invalid(
        "dkim domain with underscore",
        spec(dkim={"domain": "_dmarc.example.com"}),
        BOTH,
        operator="is not a valid host name",
    ),
    Invalid(
        "dkim key type",
        spec(dkim={"keyType": "DSA"}),
        BOTH,
        operator="spec.dkim.keyType: must be one of RSA, Ed25519",
        crd="is not one of",
    ),
    Invalid(
        "dkim rsa bits",
        spec(dkim={"rsaBits": 1024}),
        BOTH,
        operator="spec.dkim.rsaBits: must be one of 2048, 3072, 4096",
        crd="is not one of",
    ),
    Invalid("dkim rsa bits boolean", spec(dkim={"rsaBits": True}), BOTH, operator="spec.dkim.rsaBits: must be one of"),
    Invalid(
        "dkim secret ref without name",
        spec(dkim={"keySecretRef": {}}),
        BOTH,
        operator="spec.dkim.keySecretRef.name: must be a string, got null",
        crd="'name' is a required property",
    ),
    Invalid(
        "dkim secret ref bad name",
        spec(dkim={"keySecretRef": {"name": "My_Key"}}),
        BOTH,
        operator="is not a valid Secret name",
        crd="does not match",
    ),
    Invalid(
        "dkim secret ref extra field",
        spec(dkim={"keySecretRef": {"name": "k", "key": "x"}}),
        BOTH,
        operator="spec.dkim.keySecretRef.key: unknown field",
        offline=False,
    ),
    # Refused by the operator only: the CRD cannot know the Public Suffix List, run regcomp() or
    # compare quantities (tests/apiserver/test_api_validation.py lists them as known gaps).
    Invalid(
        "fqdn is a public suffix",
        spec(mailFromFQDN="co.uk"),
        OPERATOR,
        operator="'co.uk' is a public suffix",
        gap="the Public Suffix List is not in the CRD",
    ),
    Invalid(
        "keepDomain public suffix",
        spec(rewrite={"keepDomains": ["co.uk"]}),
        OPERATOR,
        operator="'co.uk' is a public suffix",
        gap="the Public Suffix List is not in the CRD",
    ),
    Invalid(
        "keepDomain private public suffix",
        spec(rewrite={"keepDomains": ["github.io"]}),
        OPERATOR,
        operator="'github.io' is a public suffix",
        gap="the Public Suffix List is not in the CRD",
    ),
    Invalid(
        "rule with an empty alternative",
        spec(rewrite={"rules": [{"pattern": "a|", "replacement": "a@a.example"}]}),
        OPERATOR,
        operator="must not have an empty alternative",
        gap="empty alternatives need a parse, not a regular expression",
    ),
    Invalid(
        "rule back-reference to a later group",
        spec(rewrite={"rules": [{"pattern": "\\1(a)", "replacement": "a@a.example"}]}),
        BOTH,
        operator="must not use the back-reference \\1",
        crd="no back-reference",
    ),
    Invalid(
        "request above limit",
        spec(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        OPERATOR,
        operator="spec.resources.requests.memory: 1Gi is more than the limit 512Mi",
        gap="no quantity comparison in the CRD",
    ),
    # Pod knobs (api/pod.py).
    Invalid(
        "pull secret without name",
        spec(imagePullSecrets=[{}]),
        BOTH,
        operator="spec.imagePullSecrets[0].name: is required",
        crd="'name' is a required property",
    ),
    Invalid(
        "pull secret as a string",
        spec(imagePullSecrets=["mirror"]),
        BOTH,
        operator="spec.imagePullSecrets[0]: must be an object, got a string",
    ),
    Invalid(
        "pull secret bad name",
        spec(imagePullSecrets=[{"name": "Mirror_Creds"}]),
        BOTH,
        operator="spec.imagePullSecrets[0].name: 'Mirror_Creds' is not a valid Secret name",
        crd="does not match",
    ),
    Invalid(
        "pull secret twice",
        spec(imagePullSecrets=[{"name": "m"}, {"name": "m"}]),
        BOTH,
        operator="duplicate Secret 'm'",
        offline=False,
    ),
    Invalid(
        "too many pull secrets",
        spec(imagePullSecrets=[{"name": f"s{i}"} for i in range(17)]),
        BOTH,
        operator="spec.imagePullSecrets: must have at most 16 entries",
    ),
    Invalid(
        "affinity unknown field",
        spec(affinity={"nodeAfinity": {}}),
        BOTH,
        operator="spec.affinity.nodeAfinity: unknown field",
        offline=False,
    ),
    Invalid(
        "affinity term without topologyKey",
        spec(affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}),
        BOTH,
        operator=(
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: is required"
        ),
    ),
    Invalid(
        "affinity weight too high",
        spec(
            affinity={
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 101, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                    ]
                }
            }
        ),
        BOTH,
        operator="must be from 1 to 100",
    ),
    Invalid(
        "node affinity bad operator",
        spec(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Equals"}]}]
                    }
                }
            }
        ),
        BOTH,
        operator="operator: must be one of 'In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt', got 'Equals'",
        crd="is not one of",
    ),
    Invalid(
        "spread without topologyKey",
        spec(topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]),
        BOTH,
        operator="spec.topologySpreadConstraints[0].topologyKey: is required",
    ),
    Invalid(
        "spread skew zero",
        spec(topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        BOTH,
        operator="spec.topologySpreadConstraints[0].maxSkew: must be from 1 to any, got 0",
        crd="is less than the minimum of 1",
    ),
    Invalid(
        "spread skew a string",
        spec(topologySpreadConstraints=[{"maxSkew": "1", "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        BOTH,
        operator="spec.topologySpreadConstraints[0].maxSkew: must be an integer, got a string",
    ),
    Invalid(
        "spread unknown policy",
        spec(topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never"}]),
        BOTH,
        operator="whenUnsatisfiable: must be one of 'DoNotSchedule', 'ScheduleAnyway', got 'Never'",
        crd="is not one of",
    ),
    Invalid(
        "spread not a list",
        spec(topologySpreadConstraints={"maxSkew": 1}),
        BOTH,
        operator="spec.topologySpreadConstraints: must be a list, got an object",
    ),
    Invalid(
        "priority class with capitals",
        spec(priorityClassName="Mail-Critical"),
        BOTH,
        operator="spec.priorityClassName: 'Mail-Critical' is not a valid PriorityClass name",
        crd="does not match",
    ),
    Invalid(
        "pod label on the selector",
        spec(podLabels={"app.kubernetes.io/instance": "other"}),
        BOTH,
        operator="spec.podLabels.app.kubernetes.io/instance: 'app.kubernetes.io/instance' is set by the operator",
    ),
    Invalid(
        "pod label in our prefix",
        spec(podLabels={"mailrelay.dev/x": "y"}),
        BOTH,
        operator="is set by the operator",
        crd="podLabels must not set the operator's own labels",
    ),
    Invalid(
        "pod label key with space",
        spec(podLabels={"cost center": "mail"}),
        BOTH,
        operator="the name must be 1 to 63 letters",
    ),
    Invalid(
        "pod label key bad prefix",
        spec(podLabels={"Example.com/team": "mail"}),
        BOTH,
        operator="the prefix before '/' must be a DNS subdomain",
    ),
    Invalid(
        "pod label key name too long",
        spec(podLabels={"a" * 64: "x"}),
        BOTH,
        operator="the name must be 1 to 63 letters",
        crd="podLabels keys must be label keys",
    ),
    Invalid(
        "pod label value too long",
        spec(podLabels={"team": "x" * 64}),
        BOTH,
        operator="is not a label value",
        crd="is too long",
    ),
    Invalid(
        "pod label value with slash",
        spec(podLabels={"team": "a/b"}),
        BOTH,
        operator="'a/b' is not a label value",
        crd="does not match",
    ),
    Invalid(
        "pod label value not a string",
        spec(podLabels={"replicas": 2}),
        BOTH,
        operator="spec.podLabels.replicas: must be a string, got an integer",
    ),
    Invalid(
        "pod annotation overrides the config hash",
        spec(podAnnotations={"mailrelay.dev/config-hash": "x"}),
        BOTH,
        operator="spec.podAnnotations.mailrelay.dev/config-hash: 'mailrelay.dev/config-hash' is set by the operator",
        crd="podAnnotations must not set the operator's own annotations",
    ),
    Invalid(
        "pod annotation key empty", spec(podAnnotations={"": "x"}), BOTH, operator="the name must be 1 to 63 letters"
    ),
    Invalid(
        "pod annotation value too long",
        spec(podAnnotations={"note": "x" * 4097}),
        BOTH,
        operator="spec.podAnnotations.note: must be at most 4096 characters",
        crd="is too long",
    ),
    Invalid(
        "pod annotations not an object",
        spec(podAnnotations=["a=b"]),
        BOTH,
        operator="spec.podAnnotations: must be an object of strings, got a list",
    ),
    Invalid(
        "too many pod labels",
        spec(podLabels={f"k{i}": "v" for i in range(33)}),
        BOTH,
        operator="spec.podLabels: must have at most 32 entries, got 33",
        crd="has too many properties",
    ),
    Invalid(
        "queue storage size a number",
        spec(queue={"storage": {"size": 1024}}),
        BOTH,
        operator="spec.queue.storage.size: must be a string, got an integer",
    ),
    Invalid(
        "queue unknown field",
        spec(queue={"persistent": True}),
        BOTH,
        operator="spec.queue.persistent: unknown field",
        offline=False,
    ),
    Invalid(
        "queue storage size with a newline",
        spec(queue={"storage": {"size": "1Gi\n"}}),
        BOTH,
        operator="is not a storage quantity",
    ),
    Invalid(
        "keepDomain with a final newline",
        spec(rewrite={"keepDomains": ["0\n"]}),
        BOTH,
        operator="is not a valid host name",
    ),
    Invalid(
        "queue storage unknown field",
        spec(queue={"storage": {"size": "1Gi", "accessModes": ["RWX"]}}),
        BOTH,
        operator="spec.queue.storage.accessModes: unknown field",
        offline=False,
    ),
    # Tenant guardrails.
    Invalid(
        "networkPolicy.enabled not a boolean",
        spec(networkPolicy={"enabled": "no"}),
        BOTH,
        operator="spec.networkPolicy.enabled: must be true or false, got 'no'",
        crd="is not of type 'boolean'",
    ),
    Invalid("clients not a list", spec(clients="web"), BOTH, operator="spec.clients: must be a list, got a string"),
    Invalid(
        "too many clients",
        spec(clients=[{"podSelector": {}}] * 21),
        BOTH,
        operator="spec.clients: must have at most 20 entries",
        crd="is too long",
    ),
    Invalid(
        "client without a selector",
        spec(clients=[{}]),
        BOTH,
        operator="spec.clients[0]: needs a namespaceSelector, a podSelector",
        crd="each clients entry needs a namespaceSelector, a podSelector or both",
    ),
    Invalid(
        "a podSelector alone adds nothing",
        spec(clients=[{"podSelector": {"matchLabels": {"app": "web"}}}]),
        BOTH,
        operator=(
            "spec.clients[0]: a podSelector alone selects pods of the relay's own namespace, which are all admitted"
        ),
        crd="a clients entry with only a podSelector selects pods of the relay's own namespace",
    ),
    Invalid(
        "own namespace off without the policy",
        spec(networkPolicy={"enabled": False, "sameNamespace": False}),
        BOTH,
        operator="spec.networkPolicy.sameNamespace: false needs enabled: true",
        crd="sameNamespace: false needs enabled: true",
    ),
    Invalid(
        "own namespace off and no clients",
        spec(networkPolicy={"sameNamespace": False}),
        BOTH,
        operator="spec.clients: must admit some pods when spec.networkPolicy.sameNamespace is false",
        crd="with networkPolicy.sameNamespace: false, clients must admit some pods",
    ),
    Invalid(
        "client with an ipBlock",
        spec(clients=[{"ipBlock": {"cidr": "10.0.0.0/8"}}]),
        BOTH,
        operator="spec.clients[0].ipBlock: unknown field",
    ),
    Invalid(
        "label key with a space",
        spec(clients=[{"namespaceSelector": {"matchLabels": {"my team": "a"}}}]),
        BOTH,
        operator="spec.clients[0].namespaceSelector.matchLabels: 'my team' is not a label key",
        crd="every matchLabels key must be a label key",
    ),
    Invalid(
        "label key name too long",
        spec(clients=[{"namespaceSelector": {"matchLabels": {"example.com/" + "k" * 64: "a"}}}]),
        BOTH,
        operator="is not a label key",
    ),
    Invalid(
        "label key prefix too long",
        spec(
            clients=[
                {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": ("a" * 63 + ".") * 4 + "com/team", "operator": "Exists"}]
                    }
                }
            ]
        ),
        BOTH,
        operator="matchExpressions[0].key: 'aaaa",
        crd="a label key's prefix must be at most 253 characters",
    ),
    Invalid(
        "label value with a slash",
        spec(clients=[{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a/b"}}}]),
        BOTH,
        operator="spec.clients[0].podSelector.matchLabels.app: 'a/b' is not a label value",
    ),
    Invalid(
        "unknown selector operator",
        spec(
            clients=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Contains", "values": ["a"]}]}}
            ]
        ),
        BOTH,
        operator="spec.clients[0].namespaceSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists",
    ),
    Invalid(
        "In without values",
        spec(clients=[{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]),
        BOTH,
        operator="matchExpressions[0].values: must not be empty for operator In",
        crd="values must be non-empty for In and NotIn",
    ),
    Invalid(
        "Exists with values",
        spec(
            clients=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]}}
            ]
        ),
        BOTH,
        operator="matchExpressions[0].values: must be empty for operator Exists",
    ),
    Invalid(
        "egress restricted without the policy",
        spec(networkPolicy={"enabled": False}, egress={"restricted": True}),
        BOTH,
        operator="spec.egress.restricted: needs spec.networkPolicy.enabled",
        crd="egress.restricted needs networkPolicy.enabled",
    ),
    Invalid(
        "smarthostNetworks without restricted",
        spec(egress={"smarthostNetworks": ["203.0.113.10/32"]}),
        BOTH,
        operator="spec.egress.smarthostNetworks: only takes effect with spec.egress.restricted: true",
        crd="smarthostNetworks only takes effect with restricted: true",
    ),
    Invalid(
        "smarthostNetworks not a CIDR",
        spec(egress={"restricted": True, "smarthostNetworks": ["smtp.example.net"]}),
        BOTH,
        operator="spec.egress.smarthostNetworks[0]: 'smtp.example.net' is not a CIDR network",
    ),
    Invalid(
        "negative message limit",
        spec(limits={"messagesPerMinute": -1}),
        BOTH,
        operator="spec.limits.messagesPerMinute: must be from 0 to 1000000, got -1",
        crd="is less than the minimum of 0",
    ),
    Invalid(
        "too many connections",
        spec(limits={"concurrentConnections": 101}),
        BOTH,
        operator="spec.limits.concurrentConnections: must be from 0 to 100, got 101",
        crd="is greater than the maximum of 100",
    ),
    Invalid(
        "recipient limit a boolean",
        spec(limits={"recipientsPerMinute": True}),
        BOTH,
        operator="spec.limits.recipientsPerMinute: must be an integer, got a boolean",
    ),
    Invalid(
        "unknown limit",
        spec(limits={"messagesPerHour": 10}),
        BOTH,
        operator="spec.limits.messagesPerHour: unknown field",
        offline=False,
    ),
    Invalid(
        "empty allowDomains",
        spec(recipients={"allowDomains": []}),
        BOTH,
        operator="spec.recipients.allowDomains: must list at least one domain",
        crd="should be non-empty",
    ),
    Invalid(
        "allowDomain with at-sign",
        spec(recipients={"allowDomains": ["ops@example.org"]}),
        BOTH,
        operator="spec.recipients.allowDomains[0]: 'ops@example.org' is not a valid host name",
        crd="every allowDomains entry must be a domain such as example.com",
    ),
    Invalid(
        "duplicate allowDomain",
        spec(recipients={"allowDomains": ["example.org", "EXAMPLE.org"]}),
        OPERATOR,
        operator="spec.recipients.allowDomains[1]: duplicate entry 'example.org'",
        gap="no case-insensitive uniqueness rule on allowDomains",
    ),
    Invalid(
        "allowDomain with a regexp",
        spec(recipients={"allowDomains": [".*"]}),
        BOTH,
        operator="is not a valid host name",
        crd="every allowDomains entry must be a domain such as example.com",
    ),
    # Configuration injection and strings that cannot start: one grammar, in the CRD and the operator.
    Invalid(
        "host ipv6 zone with injected lines",
        spec(relay={"host": "::1%lo\nalways_bcc = spy@collector.test\nsmtpd_authorized_xclient_hosts = static:all"}),
        BOTH,
        operator="is not an IPv6 address (no %zone, no brackets)",
        crd="does not match",
    ),
    Invalid(
        "host ipv6 zone",
        spec(relay={"host": "fe80::1%eth0"}),
        BOTH,
        operator="is not an IPv6 address (no %zone",
        crd="does not match",
    ),
    Invalid(
        "host trailing newline",
        spec(relay={"host": "smtp.example.net\n"}),
        BOTH,
        operator="spec.relay.host: 'smtp.example.net\\n' is not a valid host name",
        crd="does not match",
    ),
    Invalid(
        "host in brackets",
        spec(relay={"host": "[10.0.0.1]"}),
        BOTH,
        operator="'[10.0.0.1]' is not a valid host name",
        crd="does not match",
    ),
    Invalid(
        "host numeric but no address",
        spec(relay={"host": "1.2.3.999"}),
        BOTH,
        operator="'1.2.3.999' is not an IPv4 address",
        crd="host must be a host name (RFC 1123, last label with a letter) or an IP address",
    ),
    Invalid(
        "host with empty label",
        spec(relay={"host": "smtp..example.net"}),
        BOTH,
        operator="is not a valid host name",
        crd="host must be a host name (RFC 1123, last label with a letter) or an IP address",
    ),
    Invalid(
        "fqdn is an ip address",
        spec(mailFromFQDN="10.0.0.1"),
        BOTH,
        operator="spec.mailFromFQDN: '10.0.0.1' is an address, not a host name",
        crd="mailFromFQDN must be a domain name, not an IP address",
    ),
    Invalid(
        "fqdn trailing newline",
        spec(mailFromFQDN="a.example.com\n"),
        BOTH,
        operator="is not a valid host name",
        crd="does not match",
    ),
    Invalid(
        "keepDomain bare tld",
        spec(rewrite={"keepDomains": ["com"]}),
        BOTH,
        operator="spec.rewrite.keepDomains[0]: 'com' is a public suffix",
        crd="a keepDomains entry must not be a bare top-level domain or an IP address",
    ),
    Invalid(
        "keepDomain ip address",
        spec(rewrite={"keepDomains": ["192.168.0.1"]}),
        BOTH,
        operator="is an address, not a host name",
        crd="a keepDomains entry must not be a bare top-level domain or an IP address",
    ),
    Invalid(
        "secret name with underscore",
        spec(relay={"host": "h.example", "authSecretRef": {"name": "My_Secret"}}),
        BOTH,
        operator="'My_Secret' is not a valid Secret name",
        crd="does not match",
    ),
    Invalid(
        "image with newline",
        spec(image="postfix\n"),
        BOTH,
        operator="spec.image: 'postfix\\n' is not an image reference",
        crd="does not match",
    ),
    # Open relay by splitting, or through public or IPv4-in-IPv6 space.
    Invalid(
        "open relay split in halves",
        spec(allowedNetworks=["0.0.0.0/1", "128.0.0.0/1"]),
        BOTH,
        operator="spec.allowedNetworks[0]: '0.0.0.0/1' is public address space wider than /16",
        crd="public IPv4 space wider than /16",
    ),
    Invalid(
        "public /8",
        spec(allowedNetworks=["11.0.0.0/8"]),
        BOTH,
        operator="is public address space wider than /16",
        crd="public IPv4 space wider than /16",
    ),
    Invalid(
        "private range widened",
        spec(allowedNetworks=["10.0.0.0/7"]),
        BOTH,
        operator="is public address space wider than /16",
        crd="public IPv4 space wider than /16",
    ),
    Invalid(
        "public ipv6 /3",
        spec(allowedNetworks=["2000::/3"]),
        BOTH,
        operator="is public address space wider than /32",
        crd="public IPv6 space wider than /32",
    ),
    Invalid(
        "ipv4-mapped ipv6",
        spec(allowedNetworks=["::ffff:0:0/96"]),
        BOTH,
        operator="overlaps ::/8",
        crd="no IPv6 network in ::/8",
    ),
    Invalid(
        "nat64 prefix",
        spec(allowedNetworks=["64:ff9b::/96"]),
        BOTH,
        operator="overlaps ::/8",
        crd="no IPv6 network in ::/8",
    ),
    Invalid(
        "network with zone",
        spec(allowedNetworks=["fe80::%lo/64"]),
        BOTH,
        operator="is not a CIDR network (address/prefix",
        crd="does not match",
    ),
    # Rewrite patterns that would leave their anchors.
    Invalid(
        "rule escapes its group",
        spec(rewrite={"rules": [{"pattern": "x)|(y", "replacement": "a@a.example"}]}),
        BOTH,
        operator="spec.rewrite.rules[0].pattern: parentheses must balance",
        crd="pattern parentheses must balance",
    ),
    Invalid(
        "rule closes first",
        spec(rewrite={"rules": [{"pattern": "a)(b", "replacement": "a@a.example"}]}),
        BOTH,
        operator="parentheses must balance",
        crd="pattern parentheses must balance",
    ),
    Invalid(
        "rule nested too deep",
        spec(rewrite={"rules": [{"pattern": "(((((a)))))", "replacement": "a@a.example"}]}),
        BOTH,
        operator="nest at most 4 deep",
        crd="pattern parentheses must balance",
    ),
    Invalid(
        "rule unclosed bracket",
        spec(rewrite={"rules": [{"pattern": "[a(", "replacement": "a@a.example"}]}),
        BOTH,
        operator="parentheses must balance",
        crd="pattern parentheses must balance",
    ),
    # Pod fields Kubernetes would refuse after the relay was accepted.
    Invalid(
        "negative quantity string",
        spec(resources={"limits": {"memory": "-1"}}),
        BOTH,
        operator="spec.resources.limits.memory: '-1' is not a non-negative Kubernetes quantity",
        crd="does not match",
    ),
    Invalid(
        "negative quantity number",
        spec(resources={"requests": {"cpu": -1}}),
        BOTH,
        operator="-1 is not a non-negative",
        crd="less than the minimum of 0",
    ),
    Invalid(
        "quantity 5mi",
        spec(resources={"limits": {"memory": "5mi"}}),
        BOTH,
        operator="'5mi' is not a non-negative",
        crd="does not match",
    ),
    Invalid(
        "quantity 3ni",
        spec(resources={"requests": {"cpu": "3ni"}}),
        BOTH,
        operator="'3ni' is not a non-negative",
        crd="does not match",
    ),
    Invalid(
        "resource name with space",
        spec(resources={"limits": {"cpu limit": "1"}}),
        BOTH,
        operator="is not a qualified name",
        crd="resource names must be qualified names",
    ),
    Invalid(
        "node selector bad key",
        spec(nodeSelector={"bad key!": "x"}),
        BOTH,
        operator="'bad key!' is not a qualified name",
        crd="nodeSelector keys must be label keys",
    ),
    Invalid(
        "node selector bad value",
        spec(nodeSelector={"zone": "a b"}),
        BOTH,
        operator="'a b' is not a label value",
        crd="does not match",
    ),
    Invalid(
        "toleration exists with value",
        spec(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
        BOTH,
        operator="spec.tolerations[0].value: must be empty when the operator is Exists",
        crd="a toleration with operator Exists must not have a value",
    ),
    Invalid(
        "toleration without key",
        spec(tolerations=[{"operator": "Equal", "value": "v"}]),
        BOTH,
        operator="spec.tolerations[0].operator: must be Exists when the key is empty",
        crd="a toleration without a key must use operator Exists",
    ),
    Invalid(
        "toleration seconds without NoExecute",
        spec(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
        BOTH,
        operator="tolerationSeconds: is only allowed with the effect NoExecute",
        crd="tolerationSeconds is only allowed with the effect NoExecute",
    ),
    Invalid(
        "toleration bad key",
        spec(tolerations=[{"key": "bad key", "operator": "Exists"}]),
        BOTH,
        operator="is not a qualified name",
        crd="does not match",
    ),
    # The persistent queue's claim template.
    Invalid(
        "queue storage without size",
        spec(queue={"storage": {"storageClassName": "fast"}}),
        BOTH,
        operator="spec.queue.storage.size: is required",
        crd="'size' is a required property",
    ),
    Invalid(
        "queue storage size zero",
        spec(queue={"storage": {"size": "0.0Gi"}}),
        BOTH,
        operator="spec.queue.storage.size: must be more than zero",
        crd="queue.storage.size must be more than zero",
    ),
    Invalid(
        "queue storage size not a quantity",
        spec(queue={"storage": {"size": "1 GB"}}),
        BOTH,
        operator="spec.queue.storage.size: '1 GB' is not a storage quantity",
        crd="does not match",
    ),
    Invalid(
        "queue storage class invalid",
        spec(queue={"storage": {"size": "1Gi", "storageClassName": "Fast_SSD"}}),
        BOTH,
        operator="spec.queue.storage.storageClassName: 'Fast_SSD' is not a valid StorageClass name",
        crd="does not match",
    ),
    Invalid("fqdn with space", changed(spec__mailFromFQDN="a b.example"), BOTH, crd="does not match"),
    Invalid("long name", changed(metadata__name="r" * 51), BOTH, crd="metadata.name must be at most 50 characters"),
    Invalid(
        "wrapper without port defaults to 587",
        changed(spec__relay={"host": "h.example", "tls": "Wrapper", "port": 25}),
        BOTH,
        crd="tls Wrapper (SMTPS) needs port 465",
    ),
    Invalid("unknown tls", changed(spec__relay={"host": "h.example", "tls": "Starttls"}), BOTH, crd="is not one of"),
    Invalid(
        "keepDomain with at-sign, another address",
        changed(spec__rewrite={"keepDomains": ["me@x.example"]}),
        BOTH,
        crd="every keepDomains entry must be a host name",
    ),
    Invalid(
        "keepDomain with double dot",
        changed(spec__rewrite={"keepDomains": ["x..example"]}),
        BOTH,
        crd="every keepDomains entry must be a host name",
    ),
    Invalid(
        "rule with unescaped slash",
        changed(spec__rewrite={"rules": [{"pattern": "a/b", "replacement": "x@a.example"}]}),
        BOTH,
        crd="pattern must write a literal '/' as '\\/'",
    ),
    Invalid(
        "rule with lone backslash",
        changed(spec__rewrite={"rules": [{"pattern": "ab\\", "replacement": "x@a.example"}]}),
        BOTH,
        crd="must not end with a lone backslash",
    ),
    Invalid(
        "rule with newline",
        changed(spec__rewrite={"rules": [{"pattern": "a\nb", "replacement": "x@a.example"}]}),
        BOTH,
        crd="does not match '^[!-~]+$'",
    ),
    Invalid(
        "replacement with space",
        changed(spec__rewrite={"rules": [{"pattern": "a", "replacement": "x @a.example"}]}),
        BOTH,
        crd="does not match '^[!-~]+$'",
    ),
    Invalid(
        "rule without replacement, another pattern",
        changed(spec__rewrite={"rules": [{"pattern": "a"}]}),
        BOTH,
        crd="'replacement' is a required property",
    ),
    Invalid("network not CIDR", changed(spec__allowedNetworks=["10.0.0.0"]), BOTH, crd="does not match"),
    Invalid(
        "size just under the minimum",
        changed(spec__messageSizeLimitBytes=100),
        BOTH,
        crd="is less than the minimum of 1024",
    ),
    Invalid("service name", changed(spec__service={"name": "Mail"}), BOTH, crd="does not match"),
    Invalid(
        "relay without host on port 25", changed(spec__relay={"port": 25}), BOTH, crd="'host' is a required property"
    ),
    Invalid(
        "pod affinity term without topologyKey",
        changed(
            spec__affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}
        ),
        BOTH,
        crd="'topologyKey' is a required property",
    ),
    Invalid(
        "too many spread constraints",
        changed(
            spec__topologySpreadConstraints=[
                {"maxSkew": 1, "topologyKey": f"k{i}", "whenUnsatisfiable": "DoNotSchedule"} for i in range(9)
            ]
        ),
        BOTH,
        crd="is too long",
    ),
    Invalid(
        "pod label sets the name label",
        changed(spec__podLabels={"app.kubernetes.io/name": "other"}),
        BOTH,
        crd="podLabels must not set the operator's own labels",
    ),
    Invalid(
        "pod label key with space, another value",
        changed(spec__podLabels={"cost center": "x"}),
        BOTH,
        crd="podLabels keys must be label keys",
    ),
    Invalid(
        "pod annotation key bad prefix",
        changed(spec__podAnnotations={"Example.com/x": "y"}),
        BOTH,
        crd="podAnnotations keys must be annotation keys",
    ),
    Invalid(
        "DoesNotExist with values",
        changed(
            spec__clients=[
                {"podSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["a"]}]}}
            ]
        ),
        BOTH,
        crd="and empty for Exists and DoesNotExist",
    ),
    Invalid(
        "unknown pod selector operator",
        changed(
            spec__clients=[
                {"podSelector": {"matchExpressions": [{"key": "team", "operator": "Contains", "values": ["a"]}]}}
            ]
        ),
        BOTH,
        crd="is not one of",
    ),
    Invalid(
        "selector key with a space",
        changed(spec__clients=[{"podSelector": {"matchExpressions": [{"key": "my team", "operator": "Exists"}]}}]),
        BOTH,
        crd="does not match",
    ),
    Invalid(
        "pod label value with a slash, own namespace",
        changed(spec__clients=[{"podSelector": {"matchLabels": {"app": "a/b"}}}]),
        BOTH,
        crd="does not match",
    ),
    Invalid(
        "matchLabels key prefix too long",
        changed(spec__clients=[{"namespaceSelector": {"matchLabels": {("a" * 63 + ".") * 4 + "com/team": "a"}}}]),
        BOTH,
        crd="with a prefix of at most 253 characters",
    ),
    Invalid(
        "pod selector label key name too long",
        changed(spec__clients=[{"podSelector": {"matchLabels": {"x.example/" + "k" * 64: "a"}}}]),
        BOTH,
        crd="every matchLabels key must be a label key",
    ),
    Invalid(
        "label value too long",
        changed(spec__clients=[{"namespaceSelector": {"matchLabels": {"team": "a" * 64}}}]),
        BOTH,
        crd="is too long",
    ),
    Invalid(
        "smarthostNetworks a host name",
        changed(spec__egress={"restricted": True, "smarthostNetworks": ["smtp.example"]}),
        BOTH,
        crd="does not match",
    ),
    Invalid(
        "recipient limit a string",
        changed(spec__limits={"recipientsPerMinute": "100"}),
        BOTH,
        crd="is not of type 'integer'",
    ),
]


def _oauth2(change: dict[str, Any]) -> dict[str, Any]:
    """The Microsoft 365 login below with `change` (None removes a field)."""
    return {key: value for key, value in {**_M365, **change}.items() if value is not None}


_M365: dict[str, Any] = {
    "provider": "Microsoft365",
    "tenantID": "contoso.onmicrosoft.com",
    "clientID": "client-1",
    "grant": "ClientCredentials",
    "secretRef": {"name": "oauth"},
    "username": "relay@contoso.com",
}

# OAuth2 logins (api/oauth2.py): (id, oauth2 change, relay change, the CRD's words, the operator's).
_OAUTH2_ROWS: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    (
        "oauth2 without tenant",
        {"tenantID": None},
        {},
        "tenantID is required for provider Microsoft365",
        "tenantID: is required",
    ),
    (
        "oauth2 tenant for google",
        {"provider": "Google", "grant": "RefreshToken"},
        {},
        "tenantID is required for provider Microsoft365 and only for it",
        "tenantID: is only for provider Microsoft365",
    ),
    (
        "oauth2 custom without url",
        {"provider": "Custom", "tenantID": None},
        {},
        "tokenURL is required for provider Custom and only for it",
        "tokenURL: is required for provider Custom",
    ),
    (
        "oauth2 google client credentials",
        {"provider": "Google", "tenantID": None},
        {},
        "Google sends Gmail only with a user's refresh token",
        "Google sends Gmail only with a user's refresh token",
    ),
    (
        "oauth2 plain http url",
        {"provider": "Custom", "tenantID": None, "tokenURL": "http://idp.example/token"},
        {},
        "does not match",
        "is not an https URL",
    ),
    ("oauth2 scope with line break", {"scope": "a\nb"}, {}, "does not match", "is not a list of scopes"),
    ("oauth2 username with space", {"username": "a b@example.com"}, {}, "does not match", "is not an SMTP user name"),
    (
        "oauth2 tls none",
        {},
        {"tls": "None"},
        "a bearer token never goes in clear text",
        "a bearer token never goes in clear text",
    ),
    (
        "oauth2 tls may",
        {},
        {"tls": "May"},
        "a bearer token never goes in clear text",
        "a bearer token never goes in clear text",
    ),
    (
        "oauth2 and a password",
        {},
        {"authSecretRef": {"name": "login"}},
        "authSecretRef is for authType Password",
        "authSecretRef: is for authType Password",
    ),
]
INVALID += [
    Invalid(
        name,
        spec(relay={"host": "smtp.office365.com", "authType": "OAuth2", "oauth2": _oauth2(change), **relay}),
        BOTH,
        operator=operator,
        crd=crd,
    )
    for name, change, relay, crd, operator in _OAUTH2_ROWS
]
INVALID += [
    Invalid(
        "oauth2 settings without the type",
        spec(relay={"host": "smtp.office365.com", "oauth2": _M365}),
        BOTH,
        operator="spec.relay.oauth2: needs authType: OAuth2",
        crd="oauth2 is required with authType OAuth2 and only with it",
    ),
    Invalid(
        "oauth2 type without settings",
        spec(relay={"host": "smtp.office365.com", "authType": "OAuth2"}),
        BOTH,
        operator="spec.relay.oauth2: is required with authType OAuth2",
        crd="oauth2 is required with authType OAuth2 and only with it",
    ),
]
# Selectors and topology keys inside affinity and spread constraints: the upstream schema the CRD
# embeds types them; label syntax is checked by the operator (issue 23, class 6).
_SCHEDULING_GAP = "the embedded upstream schema types selectors and topology keys; label syntax is not in it"
_ANTI = "podAntiAffinity"
_POOL_IN_NOTHING = {"key": "pool", "operator": "In"}
_TERM = "requiredDuringSchedulingIgnoredDuringExecution"
INVALID += [
    Invalid(
        "affinity label selector value with a space",
        spec(
            affinity={
                _ANTI: {
                    _TERM: [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "a b"}}}]
                }
            }
        ),
        OPERATOR,
        operator=f"spec.affinity.{_ANTI}.{_TERM}[0].labelSelector.matchLabels.app: 'a b' is not a label value",
        gap=_SCHEDULING_GAP,
    ),
    Invalid(
        "affinity topologyKey that is no label key",
        spec(affinity={_ANTI: {_TERM: [{"topologyKey": "zone!", "labelSelector": {}}]}}),
        OPERATOR,
        operator=f"spec.affinity.{_ANTI}.{_TERM}[0].topologyKey: 'zone!'",
        gap=_SCHEDULING_GAP,
    ),
    Invalid(
        "node affinity In without values",
        spec(
            affinity={
                "nodeAffinity": {
                    _TERM: {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In"}]}]}
                }
            }
        ),
        OPERATOR,
        operator="values: must not be empty for operator In",
        gap=_SCHEDULING_GAP,
    ),
    Invalid(
        "spread constraint selector operator unknown",
        spec(
            topologySpreadConstraints=[
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},
                }
            ]
        ),
        BOTH,
        operator="labelSelector.matchExpressions[0].operator: must be one of 'In', 'NotIn'",
        crd="'Gt' is not one of",
    ),
]
