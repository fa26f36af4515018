"""Every name the operator has in the Kubernetes API, and every permission it needs, in one place.

The operator, the tests, the bench and `make generate` (which writes the RBAC of the kustomize
variants and the Helm chart) all read this module, so a new resource or verb is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailrelay.kube.resources import BUILTIN, Resource

GROUP = "mailrelay.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MailRelay"
PLURAL = "mailrelays"
CRD_NAME = f"{PLURAL}.{GROUP}"

FIELD_MANAGER = "mailrelay-operator"
MANAGED_BY = "mailrelay-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CHILD_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}  # what the operator watches children by

CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"
# On a relay's workload: the operator version whose rendering it is (controller.rollouts).
RENDERED_BY_ANNOTATION = f"{GROUP}/rendered-by"

LEASE_NAME = "mailrelay-operator"  # the default leader-election Lease, in the operator's namespace
# On a Secret: the MailRelays of its namespace that may use it (comma-separated names, or *).
SECRET_GRANT_ANNOTATION = f"{GROUP}/relays"


# Kind → resource, for everything the operator reads or writes.
RESOURCES: dict[str, Resource] = {**BUILTIN, KIND: Resource(GROUP, VERSION, PLURAL)}
CHILD_KINDS = ("NetworkPolicy", "ConfigMap", "Deployment", "Service")  # what every default relay owns
# Owned only in some modes: a StatefulSet instead of the Deployment (spec.queue), a budget from two replicas.
MODE_CHILD_KINDS = ("StatefulSet", "PodDisruptionBudget")


@dataclass(frozen=True)
class Rule:
    """One RBAC policy rule, with the reason it is needed (written next to it in the manifests)."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str = ""

    def as_dict(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.group], "resources": list(self.resources), "verbs": list(self.verbs)}


# Least privilege. No update on our objects (server-side apply is a patch); delete only for children
# the spec no longer wants (a renamed Service, a NetworkPolicy switched off, the workload of the other
# queue mode, a budget below two replicas; the garbage collector removes the rest); Secrets read one
# at a time, and written only for the DKIM key the operator generates; pods only read.
# Granted cluster-wide (a ClusterRole) or in each served namespace (a Role).
RELAY_RULES: tuple[Rule, ...] = (
    Rule(GROUP, (PLURAL,), ("list", "watch"), "the relay cache: one list, then a watch"),
    Rule(GROUP, (f"{PLURAL}/status",), ("patch",)),
    Rule(GROUP, (f"{PLURAL}/finalizers",), ("update",), "lets children carry blockOwnerDeletion"),
    Rule("", ("configmaps",), ("get", "list", "watch", "create", "patch")),
    Rule(
        "",
        ("services",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "delete: the old Service after a rename",
    ),
    Rule(
        "apps",
        ("deployments", "statefulsets"),
        ("get", "list", "watch", "create", "patch", "delete"),
        "delete: the other one when spec.queue switches",
    ),
    Rule(
        "policy",
        ("poddisruptionbudgets",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "delete: below two replicas",
    ),
    Rule("", ("pods",), ("list", "watch"), "the preStop drain's message as an Event; the pods the scrape asks"),
    Rule("apps", ("replicasets",), ("list", "watch"), "which pods the relay's own Deployment controls"),
    Rule("", ("pods/log",), ("get",), "why mail is deferred: the last lines of a relay's Postfix log"),
    Rule(
        "networking.k8s.io",
        ("networkpolicies",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "delete: the policy after networkPolicy.enabled: false",
    ),
    Rule(
        "",
        ("secrets",),
        ("get", "create", "patch"),
        "create/patch: DKIM keys, OAuth2 tokens, a rotated refresh token (checked in code)",
    ),
    Rule(
        "events.k8s.io",
        ("events",),
        ("create", "patch"),
        "the operator's events; patch counts a repeat in the event's series",
    ),
)
# Only when serving every namespace (a ClusterRole): nothing more today (kopf's scanning of CRDs and
# namespaces is off; the operator's own informers watch its kinds cluster-wide).
ALL_NAMESPACES_RULES: tuple[Rule, ...] = ()
# In the operator's own namespace only: leader election among replicas.
LEADER_RULES: tuple[Rule, ...] = (
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update"), "leader election"),
)
