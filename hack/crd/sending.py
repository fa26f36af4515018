"""What a relay sends as, and to whom it listens: the sender domain, rewriting, networks, size, Service."""

from __future__ import annotations

from typing import Any

from mailrelay.api import grammar, spec
from mailrelay.api.names import SMARTHOST_KIND

from crd.schema import array, integer, obj, rule, string, whole

MAIL_FROM_FQDN: dict[str, Any] = string(
    (
        "The domain every relayed sender is rewritten to (root@6ba2d5764050 becomes root@<mailFromFQDN>), "
        "in envelope and From/Sender headers. Case-insensitive."
    ),
    minLength=3,
    maxLength=253,
    pattern=r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)+$",
    rules=[
        rule(
            r'self.matches(r"(?i)(^|\.)[-a-z0-9]*[a-z][-a-z0-9]*$")',
            "mailFromFQDN must be a domain name, not an IP address: its last label needs a letter",
        ),
    ],
)

REWRITE: dict[str, Any] = obj(
    "How senders are rewritten.",
    properties={
        "keepDomains": array(
            string(maxLength=253),
            (
                "Senders whose domain is one of these, or a subdomain of one, keep their address. mailFromFQDN is "
                "always kept."
            ),
            maxItems=100,
            list_type="set",
            rules=[
                rule(
                    (f'self.all(d, d.matches(r"(?i){whole(grammar.HOSTNAME)}"))'),
                    "every keepDomains entry must be a host name such as example.com",
                ),
                rule(
                    r'self.all(d, d.contains(".") && d.matches(r"(?i)(^|\.)[-a-z0-9]*[a-z][-a-z0-9]*$"))',
                    "a keepDomains entry must not be a bare top-level domain or an IP address",
                ),
            ],
        ),
        "rules": array(
            obj(
                required=["pattern", "replacement"],
                properties={
                    "pattern": string(
                        (
                            "POSIX extended regular expression matched, case-insensitively, against the whole "
                            r"address. Write a literal '/' as '\/'. Parentheses must balance outside [...] and "
                            r"\-escapes, nested at most 4 deep. Bounded in cost, as Postfix runs it on every "
                            r"sender address: no back-references (\1 to \9); a group may be optional, (x)?, but "
                            r"not repeated (repeat characters instead: [a-z.]* for ([a-z]+\.)*); + and the "
                            "intervals {m} and {m,} (m up to 9; no {m,n}) only right after one character, '.', an "
                            r"escape or a bracket expression (a literal brace is \{ or \}); and at most 8 '?' in "
                            "all. Rules apply to addresses of at most 254 characters (RFC 5321); a longer one gets "
                            "the default rewrite."
                        ),
                        minLength=1,
                        maxLength=512,
                        pattern=whole(grammar.PRINTABLE),
                    ),
                    "replacement": string(
                        "The new address; $1 (or ${1}) inserts a group, $$ a '$'.",
                        minLength=1,
                        maxLength=512,
                        pattern=whole(grammar.PRINTABLE),
                    ),
                },
                rules=[
                    rule(
                        r'self.pattern.matches("^([^\\\\/]|\\\\.)*$")',
                        r"pattern must write a literal '/' as '\/' and must not end with a lone backslash",
                    ),
                    rule(
                        r'self.pattern.matches(r"^(([^()\[\\{}*+?|]|\\[^1-9]|\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\])(\+|\{[0-9],?\})?[*?]*|\||\((([^()\[\\{}*+?|]|\\[^1-9]|\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\])(\+|\{[0-9],?\})?[*?]*|\||\((([^()\[\\{}*+?|]|\\[^1-9]|\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\])(\+|\{[0-9],?\})?[*?]*|\||\((([^()\[\\{}*+?|]|\\[^1-9]|\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\])(\+|\{[0-9],?\})?[*?]*|\||\((([^()\[\\{}*+?|]|\\[^1-9]|\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\])(\+|\{[0-9],?\})?[*?]*|\|)*\)\??)*\)\??)*\)\??)*\)\??)*$")',
                        (
                            "pattern parentheses must balance outside [...] and escapes, at most 4 deep; no "
                            r"back-reference (\1 to \9); no repeated group, (x)? only; + and {m}, {m,} (m up to 9, "
                            "no {m,n}) only right after one character, '.', an escape or [...]"
                        ),
                    ),
                    rule(
                        r'self.pattern.matches(r"^[^?]*(\?[^?]*){0,8}$")',
                        "pattern must have at most 8 '?' (optional parts, a literal '?' included)",
                    ),
                ],
            ),
            (
                "Extra rewrites tried before the default one, first match wins. A rule's result is kept only when "
                "it lands on mailFromFQDN or a kept domain; any other result is rewritten to @mailFromFQDN like "
                "any other sender (a rule cannot turn rewriting off)."
            ),
            maxItems=spec.MAX_RULES,
        ),
    },
)

SMARTHOST_REF: dict[str, Any] = obj(
    (
        "Send through the platform's ClusterSmarthost of this name instead of a relay of one's own "
        "(excludes relay). The operator gives the relay a login of its own for the ClusterSmarthost's "
        "egress tier; the namespace must be allowed by the ClusterSmarthost and mailFromFQDN and "
        "keepDomains must be within the sender domains it grants here."
    ),
    required=["name"],
    properties={
        "name": string(minLength=1, maxLength=spec.MAX_SMARTHOST_NAME, pattern="^[a-z]([-a-z0-9]*[a-z0-9])?$"),
        "kind": string(enum=[SMARTHOST_KIND], default=SMARTHOST_KIND),
    },
)

ALLOWED_NETWORKS: dict[str, Any] = array(
    string(maxLength=49, pattern="^[0-9A-Fa-f:.]+/[0-9]{1,3}$"),
    (
        "CIDR networks (IPv4 or IPv6) whose clients may relay. Loopback is always added for the probes; "
        "nothing wider. Defaults to the three RFC 1918 ranges. Public address space must be /16 (IPv4) or "
        "/32 (IPv6) or narrower; private ranges (RFC 1918, 100.64.0.0/10, fc00::/7, fe80::/10) may be "
        "wider. Nothing in ::/8 (IPv4-mapped, NAT64)."
    ),
    minItems=1,
    maxItems=100,
    list_type="set",
    default=list(spec.DEFAULT_NETWORKS),
    rules=[
        rule(
            "self.all(n, !n.endsWith('/0'))",
            "a /0 network matches every address and would make an open relay",
        ),
        rule(
            (
                'self.all(n, n.contains(":") || n.matches(r"/(1[6-9]|2[0-9]|3[0-2])$") || '
                r'n.matches(r"^(10|127)\.[0-9.]+/([89]|[12][0-9]|3[0-2])$") || '
                r'n.matches(r"^172\.(1[6-9]|2[0-9]|3[01])\.[0-9.]+/(1[2-9]|2[0-9]|3[0-2])$") || '
                r'n.matches(r"^100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.[0-9.]+/(1[0-9]|2[0-9]|3[0-2])$"))'
            ),
            "public IPv4 space wider than /16 would let much of the Internet relay",
        ),
        rule(
            (
                'self.all(n, !n.contains(":") || n.matches(r"/(3[2-9]|[4-9][0-9]|1[01][0-9]|12[0-8])$") || '
                'n.matches(r"(?i)^f[cd][0-9a-f]{2}:[0-9a-f:]*/([7-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$") || '
                'n.matches(r"(?i)^fe[89ab][0-9a-f]:[0-9a-f:]*/(1[0-9]|[2-9][0-9]|1[01][0-9]|12[0-8])$"))'
            ),
            "public IPv6 space wider than /32 would let much of the Internet relay",
        ),
        rule(
            'self.all(n, !n.matches(r"(?i)^0*[0-9a-f]{0,2}:"))',
            "no IPv6 network in ::/8 (IPv4-mapped and NAT64 addresses stand for the IPv4 Internet)",
        ),
    ],
)

MESSAGE_SIZE_LIMIT_BYTES: dict[str, Any] = integer(
    "Largest message accepted, in bytes; larger ones are refused at SMTP time.",
    minimum=spec.MIN_MESSAGE_SIZE_LIMIT,
    maximum=spec.MAX_MESSAGE_SIZE_LIMIT,
    default=spec.DEFAULT_MESSAGE_SIZE_LIMIT,
)

SERVICE: dict[str, Any] = obj(
    "The Service clients send to.",
    default={},
    properties={
        "name": string(
            "Service name; clients use it as their mailhub.",
            default=spec.ServiceSpec.name,
            maxLength=63,
            pattern="^[a-z]([-a-z0-9]*[a-z0-9])?$",
        ),
        "port": integer(default=spec.ServiceSpec.port, minimum=1, maximum=65535),
    },
)
