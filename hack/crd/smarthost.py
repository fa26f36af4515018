"""The ClusterSmarthost CRD, built from the MailRelay CRD so the fields both have are written once.

A ClusterSmarthost's spec is a MailRelay's spec.relay (host, port, tls, authType, authSecretRef,
oauth2 and their cross-field rules), a DKIM default like spec.dkim (selector, keyType, rsaBits), an
egress tier with replicas/image/resources like a relay's, and its own allowedNamespaces, whose
namespaceSelector is the one spec.clients[] uses. Its status is a relay's plus the tenants. The rules
are those of operator/mailrelay/api/smarthost.py; `make generate` writes the result to crds/.
"""

from __future__ import annotations

import copy
from typing import Any

from mailrelay.api import smarthost as api
from mailrelay.api.names import GROUP, SMARTHOST_KIND, SMARTHOST_PLURAL, VERSION
from mailrelay.api.spec import MAX_SMARTHOST_NAME

IN_OPERATOR_NAMESPACE = "in the operator's namespace (never a tenant's)"
DOMAIN = "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?|\\{namespace\\})(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"


def _relay_fields(relay: dict[str, Any]) -> dict[str, Any]:
    fields = copy.deepcopy(relay["properties"])
    fields["host"]["description"] = "Host name, IPv4 or IPv6 address of the platform's smarthost."
    fields["authSecretRef"]["description"] = (
        f"A Secret {IN_OPERATOR_NAMESPACE} with keys username and password (authType Password)."
    )
    fields["oauth2"]["properties"]["secretRef"]["description"] = (
        f"A Secret {IN_OPERATOR_NAMESPACE} with client-secret and/or refresh-token; a rotated refresh "
        "token is written back here."
    )
    return fields


def _allowed_namespaces(selector: dict[str, Any]) -> dict[str, Any]:
    rate = {"type": "integer", "minimum": 0, "maximum": api.MAX_RATE, "default": 0}
    return {
        "type": "array",
        "description": (
            "Which namespaces may send through this smarthost, and as whom. A namespace matched by several "
            "entries gets all their domains and the tightest limits; a namespace matched by none is refused "
            "(its relays get SmarthostNotAllowed)."
        ),
        "minItems": 1,
        "maxItems": api.MAX_GRANTS,
        "items": {
            "type": "object",
            "required": ["namespaceSelector", "senderDomains"],
            "properties": {
                "namespaceSelector": selector,
                "senderDomains": {
                    "type": "array",
                    "description": (
                        "The sender domains (with their subdomains) a relay of these namespaces may use as "
                        "mailFromFQDN and keepDomains. {namespace} as a whole label stands for the namespace's "
                        "name, e.g. {namespace}.apps.example.com. No public suffix, and none after {namespace}."
                    ),
                    "minItems": 1,
                    "maxItems": api.MAX_DOMAINS,
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string", "maxLength": 253, "pattern": DOMAIN},
                },
                "limits": {
                    "type": "object",
                    "description": "Per namespace, per minute, across the egress tier; 0 means no limit.",
                    "properties": {
                        "messagesPerMinute": {**rate, "description": "Messages a namespace may send a minute."},
                        "recipientsPerMinute": {**rate, "description": "Recipients a namespace may send to a minute."},
                    },
                },
            },
        },
    }


def _status(status: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(status)
    for gone in ("dkim", "recipients"):
        out["properties"].pop(gone, None)
    listed = {"type": "string", "maxLength": 253}
    out["properties"].update(
        fingerprint={
            "type": "string",
            "description": "SHA-256 of the egress tier's TLS certificate, which tenant relays pin.",
        },
        tenants={
            "type": "array",
            "description": f"The namespaces whose relays send through it (at most {100}), with their domains.",
            "items": {
                "type": "object",
                "properties": {
                    "namespace": listed,
                    "relays": {"type": "array", "items": listed},
                    "senderDomains": {"type": "array", "items": listed},
                },
            },
        },
        denied={
            "type": "array",
            "description": "Relays that name it but may not use it, with the reason their own status shows.",
            "items": {"type": "object", "properties": {"relay": listed, "reason": listed}},
        },
    )
    return out


def crd(mailrelay: dict[str, Any]) -> dict[str, Any]:
    """The ClusterSmarthost CRD from the MailRelay CRD (crd.mailrelay.crd()), which it does not change."""
    mailrelay = copy.deepcopy(mailrelay)
    version = mailrelay["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    relay = spec["relay"]
    dkim = copy.deepcopy({k: spec["dkim"]["properties"][k] for k in ("selector", "keyType", "rsaBits")})
    selector = copy.deepcopy(spec["clients"]["items"]["properties"]["namespaceSelector"])
    selector["description"] = "Namespaces by their labels (kubernetes.io/metadata.name holds the name); {} selects all."
    properties = {
        **_relay_fields(relay),
        "allowedNamespaces": _allowed_namespaces(selector),
        "dkim": {
            "type": "object",
            "description": (
                "A DKIM key for each tenant relay without its own spec.dkim, for its mailFromFQDN (the operator "
                "generates it in the tenant's namespace; publish the record its status shows)."
            ),
            "properties": dkim,
        },
        "egress": {
            "type": "object",
            "description": "The egress tier: the Postfix Deployment in the operator's namespace that holds the login.",
            "properties": {
                "replicas": {
                    "type": "integer",
                    "description": "Egress pods; two or more hand the queue over while one rolls.",
                    "minimum": 1,
                    "maximum": api.MAX_EGRESS_REPLICAS,
                    "default": api.DEFAULT_EGRESS_REPLICAS,
                },
                "image": copy.deepcopy(spec["image"]),
                "resources": copy.deepcopy(spec["resources"]),
            },
        },
        "messageSizeLimitBytes": copy.deepcopy(spec["messageSizeLimitBytes"]),
    }
    properties["egress"]["properties"]["resources"]["description"] = "Compute resources of the egress Postfix."
    name_rule = (
        f"self.metadata.name.size() <= {MAX_SMARTHOST_NAME} "
        "&& self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{SMARTHOST_PLURAL}.{GROUP}", "labels": mailrelay["metadata"]["labels"]},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": SMARTHOST_KIND,
                "listKind": f"{SMARTHOST_KIND}List",
                "plural": SMARTHOST_PLURAL,
                "singular": SMARTHOST_KIND.lower(),
                "shortNames": ["csh"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Host", "type": "string", "jsonPath": ".spec.host"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Delivering",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Delivering")].status',
                        },
                        {"name": "Endpoint", "type": "string", "priority": 1, "jsonPath": ".status.endpoint"},
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "The platform's smarthost. Tenants' MailRelays name it in spec.smarthostRef and "
                                "send through its egress tier (in the operator's namespace, holding the login) "
                                "with a login the operator makes for each relay; they never see the smarthost's "
                                "credential and can send only from the domains allowedNamespaces grants them."
                            ),
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": name_rule,
                                    "message": f"metadata.name must be a DNS-1035 label of at most "
                                    f"{MAX_SMARTHOST_NAME} characters",
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    "type": "object",
                                    "required": ["host", "allowedNamespaces"],
                                    "properties": properties,
                                    "x-kubernetes-validations": copy.deepcopy(relay["x-kubernetes-validations"]),
                                },
                                "status": _status(schema["properties"]["status"]),
                            },
                        }
                    },
                }
            ],
        },
    }
