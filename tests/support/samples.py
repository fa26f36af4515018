"""Sample relays the tiers share: objects as a user writes them, a spec with every field, the examples."""

from __future__ import annotations

from typing import Any

import yaml

from mailrelay.api.spec import MailRelay, parse

from support.paths import EXAMPLES

UID = "6b0c1a4e-1d2f-4c1e-9a57-3f0e7a1b2c3d"


def relay_object(
    spec: dict[str, Any] | None,
    name: str = "relay",
    namespace: str = "apps",
    uid: str | None = UID,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 1}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "mailrelay.dev/v1alpha1", "kind": "MailRelay", "metadata": meta, "spec": spec}


def relay(namespace: str, name: str = "relay", **spec: Any) -> dict[str, Any]:
    """A relay as its user applies it: no uid, no generation."""
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mailFromFQDN": "apps.example.com", **spec},
    }


def make_relay(spec: dict[str, Any], **kwargs: Any) -> MailRelay:
    return parse(relay_object(spec, **kwargs))


def pod_template(relay: MailRelay) -> dict[str, Any]:
    """The relay's rendered pod template, whichever workload carries it."""
    from mailrelay.render.relay import render_relay

    workload = next(o for o in render_relay(relay).objects if o["kind"] in ("Deployment", "StatefulSet"))
    template: dict[str, Any] = workload["spec"]["template"]
    return template


FULL: dict[str, Any] = {
    "mailFromFQDN": "apps.example.com",
    "rewrite": {
        "keepDomains": ["corp.example.org"],
        "rules": [{"pattern": "([^@]+)@db-[0-9]+", "replacement": "db-$1@apps.example.com"}],
    },
    "relay": {"host": "smtp.example.net", "port": 465, "tls": "Wrapper", "authSecretRef": {"name": "smarthost"}},
    "allowedNetworks": ["10.42.0.0/16", "fd00:10::/64"],
    "messageSizeLimitBytes": 5_000_000,
    "replicas": 2,
    "resources": {"requests": {"cpu": "20m"}, "limits": {"memory": "128Mi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mail", "effect": "NoSchedule"}],
    "service": {"name": "smtp", "port": 587},
    "imagePullSecrets": [{"name": "mirror-pull"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["mail"]}]}]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "relay"}},
                    },
                }
            ]
        },
    },
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"team": "mail"}},
        },
    ],
    "priorityClassName": "mail-critical",
    "podLabels": {"cost-center": "platform", "example.com/team": "mail"},
    "podAnnotations": {"sidecar.istio.io/inject": "false", "example.com/note": "relays: {a: b}"},
}


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in children}


CLIENTS = [
    {"namespaceSelector": {"matchLabels": {"team": "web"}}},
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "billing"}},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["invoices"]}]},
    },
    {
        "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]}]},
        "podSelector": {"matchLabels": {"mail": "yes"}},
    },
]
GUARDED: dict[str, Any] = {
    "mailFromFQDN": "apps.example.com",
    "clients": CLIENTS,
    "relay": {"host": "smtp.example.net", "port": 587},
    "egress": {"restricted": True, "smarthostNetworks": ["203.0.113.10/32", "2001:db8::/64"]},
}


def example_relays() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "MailRelay"]
    return docs


GOOD = [
    relay_object(FULL),
    relay_object(GUARDED),
    relay_object({"mailFromFQDN": "a.example"}),
    relay_object({"mailFromFQDN": "a.example", "relay": {"host": "smtp.example.net", "port": 465, "tls": "Wrapper"}}),
    relay_object(
        {"mailFromFQDN": "a.example", "rewrite": {"rules": [{"pattern": "a\\/b\\\\", "replacement": "$$1@a.example"}]}}
    ),
    relay_object({"mailFromFQDN": "apps.example.com", "dkim": {}}),
    relay_object(
        {
            "mailFromFQDN": "apps.example.com",
            "dkim": {
                "domain": "example.com",
                "selector": "r1",
                "keyType": "Ed25519",
                "rsaBits": 3072,
                "keySecretRef": {"name": "dkim.keys"},
            },
        }
    ),
    relay_object({"mailFromFQDN": "a.example", "queue": {"storage": {"size": "0.5Gi", "storageClassName": "fast"}}}),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "networkPolicy": {"sameNamespace": False},
            "clients": [{"podSelector": {"matchLabels": {"app": "web"}}}],
        }
    ),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "networkPolicy": {"enabled": False},
            "limits": {"messagesPerMinute": 0, "recipientsPerMinute": 0, "concurrentConnections": 0},
        }
    ),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "clients": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}},
                {
                    "namespaceSelector": {},
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "mailrelay.dev/client", "operator": "Exists"},
                            {"key": "tier", "operator": "NotIn", "values": ["batch", "x_y.z-1"]},
                        ]
                    },
                },
            ],
            "egress": {"restricted": True, "smarthostNetworks": ["203.0.113.10/32"]},
            "recipients": {"allowDomains": ["example.org", "Test.Example.net"]},
        }
    ),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "allowedNetworks": [
                "fd00::/8",
                "fc00::/7",
                "fe80::/10",
                "100.64.0.0/10",
                "172.16.0.0/12",
                "203.0.113.0/24",
                "198.18.0.0/16",
                "2001:db8:42::/48",
                "2001:db8::/32",
            ],
        }
    ),
    relay_object({"mailFromFQDN": "a.example", "relay": {"host": "2001:db8::25", "port": 25}}),
    relay_object({"mailFromFQDN": "a.example", "relay": {"host": "192.0.2.25", "port": 25}}),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "rewrite": {
                "keepDomains": ["example.co.uk"],
                "rules": [{"pattern": "(a)?|[(]x[)]{2}|((((b))))|[[:alpha:]]+@c", "replacement": "$1@a.example"}],
            },
        }
    ),
    relay_object(
        {
            "mailFromFQDN": "a.example",
            "resources": {
                "requests": {"cpu": "1.5", "memory": "64Ki"},
                "limits": {"memory": 134217728, "example.com/dev": "1"},
            },
            "nodeSelector": {"topology.kubernetes.io/zone": "eu-1a"},
            "tolerations": [
                {"operator": "Exists"},
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                },
            ],
        }
    ),
]
