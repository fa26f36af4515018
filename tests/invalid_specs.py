"""Invalid MailRelay specs that the CRD and the operator must both refuse: one table, two consumers.

Each row: (id, spec fields over a valid base, what the API server says, what the operator says).
tests/test_crd.py checks the CRD message and tests/test_spec.py the operator's; a real API server can
be fed the same rows.
"""

from __future__ import annotations

from typing import Any

BASE_SPEC: dict[str, Any] = {"mailFromFQDN": "apps.example.com"}

REFUSED_BY_BOTH: list[tuple[str, dict[str, Any], str, str]] = [
    # Configuration injection and strings that cannot start: one grammar, in the CRD and the operator.
    (
        "host ipv6 zone with injected lines",
        {"relay": {"host": "::1%lo\nalways_bcc = spy@collector.test\nsmtpd_authorized_xclient_hosts = static:all"}},
        "does not match",
        "is not an IPv6 address (no %zone, no brackets)",
    ),
    ("host ipv6 zone", {"relay": {"host": "fe80::1%eth0"}}, "does not match", "is not an IPv6 address (no %zone"),
    (
        "host trailing newline",
        {"relay": {"host": "smtp.example.net\n"}},
        "does not match",
        "spec.relay.host: 'smtp.example.net\\n' is not a valid host name",
    ),
    ("host in brackets", {"relay": {"host": "[10.0.0.1]"}}, "does not match", "'[10.0.0.1]' is not a valid host name"),
    (
        "host numeric but no address",
        {"relay": {"host": "1.2.3.999"}},
        "host must be a host name (RFC 1123, last label with a letter) or an IP address",
        "'1.2.3.999' is not an IPv4 address",
    ),
    (
        "host with empty label",
        {"relay": {"host": "smtp..example.net"}},
        "host must be a host name (RFC 1123, last label with a letter) or an IP address",
        "is not a valid host name",
    ),
    (
        "fqdn is an ip address",
        {"mailFromFQDN": "10.0.0.1"},
        "mailFromFQDN must be a domain name, not an IP address",
        "spec.mailFromFQDN: '10.0.0.1' is an address, not a host name",
    ),
    ("fqdn trailing newline", {"mailFromFQDN": "a.example.com\n"}, "does not match", "is not a valid host name"),
    (
        "keepDomain bare tld",
        {"rewrite": {"keepDomains": ["com"]}},
        "a keepDomains entry must not be a bare top-level domain or an IP address",
        "spec.rewrite.keepDomains[0]: 'com' is a public suffix",
    ),
    (
        "keepDomain ip address",
        {"rewrite": {"keepDomains": ["192.168.0.1"]}},
        "a keepDomains entry must not be a bare top-level domain or an IP address",
        "is an address, not a host name",
    ),
    (
        "secret name with underscore",
        {"relay": {"host": "h.example", "authSecretRef": {"name": "My_Secret"}}},
        "does not match",
        "'My_Secret' is not a valid Secret name",
    ),
    (
        "image with newline",
        {"image": "postfix\n"},
        "does not match",
        "spec.image: 'postfix\\n' is not an image reference",
    ),
    # Open relay by splitting, or through public or IPv4-in-IPv6 space.
    (
        "open relay split in halves",
        {"allowedNetworks": ["0.0.0.0/1", "128.0.0.0/1"]},
        "public IPv4 space wider than /16",
        "spec.allowedNetworks[0]: '0.0.0.0/1' is public address space wider than /16",
    ),
    (
        "public /8",
        {"allowedNetworks": ["11.0.0.0/8"]},
        "public IPv4 space wider than /16",
        "is public address space wider than /16",
    ),
    (
        "private range widened",
        {"allowedNetworks": ["10.0.0.0/7"]},
        "public IPv4 space wider than /16",
        "is public address space wider than /16",
    ),
    (
        "public ipv6 /3",
        {"allowedNetworks": ["2000::/3"]},
        "public IPv6 space wider than /32",
        "is public address space wider than /32",
    ),
    ("ipv4-mapped ipv6", {"allowedNetworks": ["::ffff:0:0/96"]}, "no IPv6 network in ::/8", "overlaps ::/8"),
    ("nat64 prefix", {"allowedNetworks": ["64:ff9b::/96"]}, "no IPv6 network in ::/8", "overlaps ::/8"),
    (
        "network with zone",
        {"allowedNetworks": ["fe80::%lo/64"]},
        "does not match",
        "is not a CIDR network (address/prefix",
    ),
    # Rewrite patterns that would leave their anchors.
    (
        "rule escapes its group",
        {"rewrite": {"rules": [{"pattern": "x)|(y", "replacement": "a@a.example"}]}},
        "pattern parentheses must balance",
        "spec.rewrite.rules[0].pattern: parentheses must balance",
    ),
    (
        "rule closes first",
        {"rewrite": {"rules": [{"pattern": "a)(b", "replacement": "a@a.example"}]}},
        "pattern parentheses must balance",
        "parentheses must balance",
    ),
    (
        "rule nested too deep",
        {"rewrite": {"rules": [{"pattern": "(((((a)))))", "replacement": "a@a.example"}]}},
        "pattern parentheses must balance",
        "nest at most 4 deep",
    ),
    (
        "rule unclosed bracket",
        {"rewrite": {"rules": [{"pattern": "[a(", "replacement": "a@a.example"}]}},
        "pattern parentheses must balance",
        "parentheses must balance",
    ),
    # Rewrite patterns whose cost in Postfix's cleanup is not bounded by their length (issue 23).
    (
        "rule back-references from the issue",
        {"rewrite": {"rules": [{"pattern": r"(.*)(.*)(.*)(.*)\4\3\2\1@x", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must not use the back-reference \\4",
    ),
    (
        "rule back-reference to an earlier group",
        {"rewrite": {"rules": [{"pattern": r"([a-z])\1-(.*)@(.*)", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must not use the back-reference \\1",
    ),
    (
        "rule interval of an interval from the issue",
        {"rewrite": {"rules": [{"pattern": r"(.{0,255}){0,255}x", "replacement": "a@a.example"}]}},
        "no back-reference",
        "repeats up to 9 times at most",
    ),
    (
        "rule interval above nine",
        {"rewrite": {"rules": [{"pattern": r"[0-9]{10}@x", "replacement": "a@a.example"}]}},
        "no back-reference",
        "repeats up to 9 times at most in an interval, got {10}",
    ),
    (
        "rule interval with an upper bound",
        {"rewrite": {"rules": [{"pattern": r"(.{0,9}.{0,9}.{0,9})@x", "replacement": "a@a.example"}]}},
        "no {m,n}",
        "must not give an interval an upper bound, got {0,9} (at position 2)",
    ),
    (
        "rule with nine optional parts",
        {"rewrite": {"rules": [{"pattern": r"(a?b?c?d?e?f?g?h?i?)@x", "replacement": "a@a.example"}]}},
        "pattern must have at most 8 '?'",
        "must have at most 8 '?' (optional parts, a literal '?' included), got 9",
    ),
    (
        "rule interval after a group",
        {"rewrite": {"rules": [{"pattern": r"(ab){2}@x", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must not repeat a group (at position 4)",
    ),
    (
        "rule plus after a group",
        {"rewrite": {"rules": [{"pattern": r"([a-z]+\.)+example\.com", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must not repeat a group (at position 10)",
    ),
    (
        "rule nested plus",
        {"rewrite": {"rules": [{"pattern": r"((((a?a?a?)+)+)+)+", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must not repeat a group (at position 11)",
    ),
    (
        "rule repeated group that glibc loops on",
        {"rewrite": {"rules": [{"pattern": r"(b*|a|c*)*@x", "replacement": "$1@a.example"}]}},
        "no repeated group",
        "must not repeat a group (at position 9)",
    ),
    (
        "rule starred group",
        {"rewrite": {"rules": [{"pattern": r"([a-z]+\.)*example\.com", "replacement": "a@a.example"}]}},
        "no repeated group",
        "repeat characters instead, e.g. [a-z.]*",
    ),
    (
        "rule repeated optional group",
        {"rewrite": {"rules": [{"pattern": r"(x)?*@y", "replacement": "a@a.example"}]}},
        "no repeated group",
        "must not repeat a group (at position 4)",
    ),
    (
        "rule starts with a repetition",
        {"rewrite": {"rules": [{"pattern": r"*@y", "replacement": "a@a.example"}]}},
        "no repeated group",
        "has nothing to repeat before the '*' at position 0",
    ),
    (
        "rule interval after an interval",
        {"rewrite": {"rules": [{"pattern": r"a{2}{3}", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must put {3} (at position 4) right after one character",
    ),
    (
        "rule interval after a star",
        {"rewrite": {"rules": [{"pattern": r"a*{2}", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must put {2} (at position 2)",
    ),
    (
        "rule plus after a plus",
        {"rewrite": {"rules": [{"pattern": r"a++", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must put + (at position 2)",
    ),
    (
        "rule plus after an interval",
        {"rewrite": {"rules": [{"pattern": r"a{9}+", "replacement": "a@a.example"}]}},
        "no back-reference",
        "must put + (at position 4)",
    ),
    (
        "rule bare opening brace",
        {"rewrite": {"rules": [{"pattern": r"a{x}@y", "replacement": "a@a.example"}]}},
        "no back-reference",
        "has a '{' that starts no interval",
    ),
    (
        "rule interval without a lower count",
        {"rewrite": {"rules": [{"pattern": r"a{,5}", "replacement": "a@a.example"}]}},
        "no back-reference",
        "has a '{' that starts no interval",
    ),
    (
        "rule bare closing brace",
        {"rewrite": {"rules": [{"pattern": r"a}@y", "replacement": "a@a.example"}]}},
        "no back-reference",
        "has a '}' that closes no interval",
    ),
    # Pod fields Kubernetes would refuse after the relay was accepted.
    (
        "negative quantity string",
        {"resources": {"limits": {"memory": "-1"}}},
        "does not match",
        "spec.resources.limits.memory: '-1' is not a non-negative Kubernetes quantity",
    ),
    (
        "negative quantity number",
        {"resources": {"requests": {"cpu": -1}}},
        "less than the minimum of 0",
        "-1 is not a non-negative",
    ),
    ("quantity 5mi", {"resources": {"limits": {"memory": "5mi"}}}, "does not match", "'5mi' is not a non-negative"),
    ("quantity 3ni", {"resources": {"requests": {"cpu": "3ni"}}}, "does not match", "'3ni' is not a non-negative"),
    (
        "resource name with space",
        {"resources": {"limits": {"cpu limit": "1"}}},
        "resource names must be qualified names",
        "is not a qualified name",
    ),
    (
        "node selector bad key",
        {"nodeSelector": {"bad key!": "x"}},
        "nodeSelector keys must be label keys",
        "'bad key!' is not a qualified name",
    ),
    ("node selector bad value", {"nodeSelector": {"zone": "a b"}}, "does not match", "'a b' is not a label value"),
    (
        "toleration exists with value",
        {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
        "a toleration with operator Exists must not have a value",
        "spec.tolerations[0].value: must be empty when the operator is Exists",
    ),
    (
        "toleration without key",
        {"tolerations": [{"operator": "Equal", "value": "v"}]},
        "a toleration without a key must use operator Exists",
        "spec.tolerations[0].operator: must be Exists when the key is empty",
    ),
    (
        "toleration seconds without NoExecute",
        {"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]},
        "tolerationSeconds is only allowed with the effect NoExecute",
        "tolerationSeconds: is only allowed with the effect NoExecute",
    ),
    (
        "toleration bad key",
        {"tolerations": [{"key": "bad key", "operator": "Exists"}]},
        "does not match",
        "is not a qualified name",
    ),
    # The persistent queue's claim template.
    (
        "queue storage without size",
        {"queue": {"storage": {"storageClassName": "fast"}}},
        "'size' is a required property",
        "spec.queue.storage.size: is required",
    ),
    (
        "queue storage size zero",
        {"queue": {"storage": {"size": "0.0Gi"}}},
        "queue.storage.size must be more than zero",
        "spec.queue.storage.size: must be more than zero",
    ),
    (
        "queue storage size not a quantity",
        {"queue": {"storage": {"size": "1 GB"}}},
        "does not match",
        "spec.queue.storage.size: '1 GB' is not a storage quantity",
    ),
    (
        "queue storage class invalid",
        {"queue": {"storage": {"size": "1Gi", "storageClassName": "Fast_SSD"}}},
        "does not match",
        "spec.queue.storage.storageClassName: 'Fast_SSD' is not a valid StorageClass name",
    ),
]
