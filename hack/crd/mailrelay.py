"""The MailRelay CRD, declared in Python so each limit, enum and grammar is written once.

The numbers, enums and regular expressions come from the operator's own validation
(operator/mailrelay/api), which enforces the same rules in Python for what an API server skips
(older servers, CEL it cannot run, objects edited in etcd). `make generate` writes the result to
crds/ and the chart; the ClusterSmarthost CRD (crd/smarthost.py) is built from this one.
"""

from __future__ import annotations

import copy
from typing import Any

from mailrelay.api.names import CRD_NAME, GROUP, KIND, PLURAL, VERSION
from mailrelay.api.spec import MAX_NAME_LENGTH

from crd import pod, relay, sending, status, tenancy
from crd.schema import obj, rule, string

SHORT_NAMES = ["mr"]


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind}
    if priority:
        column["priority"] = priority
    column["jsonPath"] = path
    return column


def _condition(kind: str, field: str = "status") -> str:
    return f'.status.conditions[?(@.type=="{kind}")].{field}'


COLUMNS = [
    _column("FQDN", "string", ".spec.mailFromFQDN"),
    _column("Ready", "string", _condition("Ready")),
    _column("Replicas", "integer", ".status.replicas"),
    _column("Delivering", "string", _condition("Delivering")),
    _column("Deferred", "integer", ".status.queue.deferred", priority=1),
    _column("DKIM", "string", ".status.dkim.signing"),
    _column("Endpoint", "string", ".status.endpoint", priority=1),
    _column("Reason", "string", _condition("Ready", "reason"), priority=1),
    _column("DKIM-Record", "string", ".status.dkim.records[0].name", priority=1),
    _column("Age", "date", ".metadata.creationTimestamp"),
]

SPEC_PROPERTIES: dict[str, Any] = {
    "mailFromFQDN": sending.MAIL_FROM_FQDN,
    "rewrite": sending.REWRITE,
    "relay": relay.RELAY,
    "smarthostRef": sending.SMARTHOST_REF,
    "allowedNetworks": sending.ALLOWED_NETWORKS,
    "messageSizeLimitBytes": sending.MESSAGE_SIZE_LIMIT_BYTES,
    "replicas": pod.REPLICAS,
    "image": pod.IMAGE,
    "resources": pod.RESOURCES,
    "nodeSelector": pod.NODE_SELECTOR,
    "tolerations": pod.TOLERATIONS,
    "imagePullSecrets": pod.IMAGE_PULL_SECRETS,
    "affinity": pod.AFFINITY,
    "topologySpreadConstraints": pod.TOPOLOGY_SPREAD_CONSTRAINTS,
    "priorityClassName": pod.PRIORITY_CLASS_NAME,
    "podLabels": pod.POD_LABELS,
    "podAnnotations": pod.POD_ANNOTATIONS,
    "service": sending.SERVICE,
    "dkim": relay.DKIM,
    "queue": pod.QUEUE,
    "networkPolicy": tenancy.NETWORK_POLICY,
    "clients": tenancy.CLIENTS,
    "egress": tenancy.EGRESS,
    "limits": tenancy.LIMITS,
    "recipients": tenancy.RECIPIENTS,
}

SPEC: dict[str, Any] = obj(
    required=["mailFromFQDN"],
    properties=SPEC_PROPERTIES,
    rules=[
        rule(
            "!has(self.smarthostRef) || !has(self.relay)",
            "smarthostRef and relay exclude each other: the ClusterSmarthost is the relay",
            fieldPath=".smarthostRef",
        ),
        rule(
            (
                "!has(self.smarthostRef) || !has(self.egress) || !has(self.egress.smarthostNetworks) || "
                "size(self.egress.smarthostNetworks) == 0"
            ),
            "egress.smarthostNetworks does not apply with smarthostRef: the egress tier is inside the cluster",
            fieldPath=".egress.smarthostNetworks",
        ),
        rule(
            "!has(self.egress) || !self.egress.restricted || self.networkPolicy.enabled",
            "egress.restricted needs networkPolicy.enabled: the egress rules live in the NetworkPolicy",
            fieldPath=".egress.restricted",
        ),
        rule(
            "self.networkPolicy.sameNamespace || (has(self.clients) && size(self.clients) > 0)",
            "with networkPolicy.sameNamespace: false, clients must admit some pods",
            fieldPath=".clients",
        ),
        rule(
            (
                "!self.networkPolicy.sameNamespace || !has(self.clients) || self.clients.all(c, "
                "has(c.namespaceSelector))"
            ),
            (
                "a clients entry with only a podSelector selects pods of the relay's own namespace, all admitted "
                "already: add a namespaceSelector or set networkPolicy.sameNamespace: false"
            ),
            fieldPath=".clients",
        ),
        rule(
            (
                "!has(self.dkim) || !has(self.dkim.domain) || self.mailFromFQDN == self.dkim.domain || "
                "self.mailFromFQDN.endsWith('.' + self.dkim.domain)"
            ),
            "dkim.domain must be mailFromFQDN or a parent domain of it (both in lower case)",
            fieldPath=".dkim.domain",
        ),
    ],
)

SCHEMA: dict[str, Any] = obj(
    (
        'A closed SMTP relay for the namespace. The operator runs Postfix behind a Service (named "mail" '
        "by default) and rewrites every sender to an address at spec.mailFromFQDN."
    ),
    required=["spec"],
    properties={
        "apiVersion": string(),
        "kind": string(),
        "metadata": obj(),
        "spec": SPEC,
        "status": status.STATUS,
    },
    rules=[
        rule(
            f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            f"metadata.name must be at most {MAX_NAME_LENGTH} characters",
        ),
    ],
)


# `kubectl scale mailrelay`, HPA and KEDA: replicas in spec, pods and their selector in status.
SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}

SERVED_VERSION: dict[str, Any] = {
    "name": VERSION,
    "served": True,
    "storage": True,
    "subresources": {"status": {}, "scale": SCALE},
    "additionalPrinterColumns": COLUMNS,
    "schema": {"openAPIV3Schema": SCHEMA},
}


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object (a fresh copy: YAML would write a shared node as an alias)."""
    names = {
        "kind": KIND,
        "listKind": f"{KIND}List",
        "plural": PLURAL,
        "singular": KIND.lower(),
        "shortNames": SHORT_NAMES,
        "categories": ["all"],
    }
    return copy.deepcopy(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "mailrelay-operator"}},
            "spec": {"group": GROUP, "scope": "Namespaced", "names": names, "versions": [SERVED_VERSION]},
        }
    )
