"""The tenant guardrails: NetworkPolicy, client allow-list, egress, rate limits, recipient domains."""

from __future__ import annotations

from typing import Any

from mailrelay.api import grammar, guardrails
from mailrelay.api.labels import SELECTOR_OPERATORS

from crd.schema import array, boolean, cel_regex, integer, obj, rule, string, whole

LIMITS_DEFAULT = guardrails.Limits()


def label_selector(description: str) -> dict[str, Any]:
    """A metav1.LabelSelector (matchLabels, matchExpressions) with the grammar of its keys and values."""
    return obj(
        description,
        properties={
            "matchLabels": obj(
                "Labels that must all be present with these values.",
                maxProperties=guardrails.MAX_SELECTOR_TERMS,
                values=string(maxLength=63, pattern=whole(grammar.LABEL_VALUE)),
                rules=[
                    rule(
                        (
                            f"self.all(k, k.matches({cel_regex(grammar.LABEL_KEY)}) "
                            "&& k.matches('^([-a-z0-9.]{1,253}/)?[^/]*$'))"
                        ),
                        (
                            "every matchLabels key must be a label key such as team or example.com/team, with a "
                            "prefix of at most 253 characters"
                        ),
                    ),
                ],
            ),
            "matchExpressions": array(
                obj(
                    required=["key", "operator"],
                    properties={
                        "key": string(
                            maxLength=317,
                            pattern=whole(grammar.LABEL_KEY),
                            rules=[
                                rule(
                                    "self.matches('^([-a-z0-9.]{1,253}/)?[^/]*$')",
                                    "a label key's prefix must be at most 253 characters",
                                ),
                            ],
                        ),
                        "operator": string(enum=list(SELECTOR_OPERATORS)),
                        "values": array(
                            string(
                                maxLength=63,
                                pattern=whole(grammar.LABEL_VALUE),
                            ),
                            maxItems=guardrails.MAX_SELECTOR_VALUES,
                        ),
                    },
                    rules=[
                        rule(
                            (
                                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
                                "(!has(self.values) || size(self.values) == 0)"
                            ),
                            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                        ),
                    ],
                ),
                "Requirements that must all hold (key, operator In/NotIn/Exists/DoesNotExist, values).",
                maxItems=guardrails.MAX_SELECTOR_TERMS,
            ),
        },
    )


NETWORK_POLICY: dict[str, Any] = obj(
    (
        "The NetworkPolicy the operator keeps for the relay pods. It admits SMTP only from pods of the "
        "relay's own namespace and from spec.clients. It only protects where the cluster's network plugin "
        "enforces NetworkPolicies; the operator cannot tell whether it does."
    ),
    default={},
    properties={
        "enabled": boolean(
            (
                "false removes the policy (for network plugins that enforce none); Postfix then admits every pod "
                "within allowedNetworks, from any namespace."
            ),
            default=True,
        ),
        "sameNamespace": boolean(
            (
                "true admits every pod of the relay's namespace; false only the pods spec.clients selects (a "
                "podSelector alone then picks pods of the relay's namespace) and the relay's own pods, which hand "
                "their queue to each other when one goes away."
            ),
            default=True,
        ),
    },
    rules=[
        rule(
            "!has(self.enabled) || self.enabled || !has(self.sameNamespace) || self.sameNamespace",
            "sameNamespace: false needs enabled: true",
            fieldPath=".sameNamespace",
        ),
    ],
)

CLIENTS: dict[str, Any] = array(
    obj(
        properties={
            "namespaceSelector": label_selector(
                "Namespaces by their labels (kubernetes.io/metadata.name holds the name); {} selects all."
            ),
            "podSelector": label_selector("Pods by their labels; {} selects all."),
        },
        rules=[
            rule(
                "has(self.namespaceSelector) || has(self.podSelector)",
                "each clients entry needs a namespaceSelector, a podSelector or both",
            ),
        ],
    ),
    (
        "More pods that may send through the relay, besides the pods of its own namespace "
        "(networkPolicy.sameNamespace). Each entry is a NetworkPolicy peer: namespaceSelector alone "
        "admits every pod of the selected namespaces; podSelector alone, the selected pods of the relay's "
        "namespace (only useful with sameNamespace: false); both, the selected pods in the selected "
        "namespaces. An entry admits a pod when all its selectors match; a pod is admitted when any entry "
        "does."
    ),
    maxItems=guardrails.MAX_CLIENTS,
)

EGRESS: dict[str, Any] = obj(
    (
        "Outgoing traffic of the relay pods. Open unless restricted: then the NetworkPolicy lets the pods "
        "reach only DNS (port 53, UDP and TCP), the smarthost's port (spec.relay.port, or 25 for direct "
        "delivery to each recipient's MX), and each other on port 25 (a pod that goes away hands its "
        "queue to the others)."
    ),
    properties={
        "restricted": boolean(
            ("true limits egress to DNS, the smarthost port and the relay's own pods; needs networkPolicy.enabled."),
            default=False,
        ),
        "smarthostNetworks": array(
            string(maxLength=49, pattern="^[0-9A-Fa-f:.]+/[0-9]{1,3}$"),
            (
                "With restricted: the smarthost's addresses as CIDR networks; without them, the smarthost port is "
                "open to any address (a NetworkPolicy cannot name a host)."
            ),
            maxItems=guardrails.MAX_EGRESS_NETWORKS,
            list_type="set",
        ),
    },
    rules=[
        rule(
            "!has(self.smarthostNetworks) || size(self.smarthostNetworks) == 0 || self.restricted",
            "smarthostNetworks only takes effect with restricted: true",
            fieldPath=".smarthostNetworks",
        ),
    ],
)

LIMITS: dict[str, Any] = obj(
    (
        "Per client address (a pod), counted by Postfix over one minute; 0 turns a limit off. A client "
        "over a limit gets a temporary refusal (421 at connect, 450 at MAIL FROM or RCPT TO), so an MTA "
        "keeps the message and retries."
    ),
    default={},
    properties={
        "messagesPerMinute": integer(
            "Messages one client may send per minute.",
            minimum=0,
            maximum=guardrails.MAX_MESSAGES_PER_MINUTE,
            default=LIMITS_DEFAULT.messages_per_minute,
        ),
        "recipientsPerMinute": integer(
            "Recipients one client may send to per minute, over all its messages.",
            minimum=0,
            maximum=guardrails.MAX_RECIPIENTS_PER_MINUTE,
            default=LIMITS_DEFAULT.recipients_per_minute,
        ),
        "concurrentConnections": integer(
            "SMTP connections one client may hold open at once (Postfix runs at most 100).",
            minimum=0,
            maximum=guardrails.MAX_CONNECTIONS,
            default=LIMITS_DEFAULT.concurrent_connections,
        ),
    },
)

RECIPIENTS: dict[str, Any] = obj(
    "Whom the relay sends to.",
    properties={
        "allowDomains": array(
            string(maxLength=253),
            (
                "Only recipients at these domains, or their subdomains, are accepted; any other recipient is "
                "refused at RCPT TO with a 550 naming this policy, and so is any recipient that is not a plain "
                "local@domain (a bare postmaster included). Leave out to allow any recipient (for non-production "
                "namespaces, list your own domains)."
            ),
            minItems=1,
            maxItems=guardrails.MAX_ALLOW_DOMAINS,
            list_type="set",
            rules=[
                rule(
                    (
                        "self.all(d, "
                        r"d.matches('^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$'))"
                    ),
                    "every allowDomains entry must be a domain such as example.com",
                ),
            ],
        ),
    },
)
