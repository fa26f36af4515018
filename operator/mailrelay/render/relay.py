"""Pure functions from a validated MailRelay to the children it owns.

ConfigMap, Service, NetworkPolicy, and a Deployment (queue in an emptyDir) or a StatefulSet (queue
on a PersistentVolumeClaim per pod, `spec.queue.storage`); a PodDisruptionBudget from two replicas on.

No I/O and no clock: the same relay always renders the same bytes, which is what lets the
controller compare live objects with these and write only when something really differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mailrelay.api.names import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RENDERED_BY_ANNOTATION,
)
from mailrelay.api.spec import MailRelay, MailRelaySpec
from mailrelay.render import opendkim, postfix, sidecar, xoauth2
from mailrelay.version import __version__

CONTAINER = "postfix"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
SMTP_PORT_NAME = "smtp"
DNS_PORT = 53

# Paths inside the relay image; image/postfix/entrypoint.sh uses the same defaults.
CONFIG_MOUNT = "/etc/mailrelay/config"
SECRET_MOUNT = "/etc/mailrelay/secret"
DKIM_KEY_MOUNT = "/etc/mailrelay/dkim-key"  # entrypoint.sh copies the keys from here for OpenDKIM
RUNTIME_DIR = "/run/mailrelay"
POSTFIX_CONFIG_DIR = f"{RUNTIME_DIR}/postfix"
QUEUE_DIR = "/var/spool/postfix"
DATA_DIR = "/var/lib/postfix"
TMP_DIR = "/tmp"  # writable under the read-only root: `mail` (bsd-mailx) spools its draft here
PROBE = "/usr/local/bin/mailrelay-probe"
DRAIN = "/usr/local/bin/mailrelay-drain"
# The preStop drain's phases (image/postfix/drain.sh): keep accepting while the pod leaves the
# Service's endpoints, let open sessions finish, deliver, hand the rest to the other replicas. The
# grace period covers them all plus the time the kubelet needs to stop Postfix afterwards.
ENDPOINT_WAIT_SECONDS = 10
SESSION_WAIT_SECONDS = 5
DRAIN_SECONDS = 20
HANDOFF_SECONDS = 30
TERMINATION_GRACE_SECONDS = ENDPOINT_WAIT_SECONDS + SESSION_WAIT_SECONDS + DRAIN_SECONDS + HANDOFF_SECONDS + 10
TERMINATION_LOG = "/dev/termination-log"  # the drain's last word, which the operator posts as an Event
PDB_MIN_REPLICAS = 2
DEFAULT_SPREAD = ({"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"},)

# The relay container's, when spec.resources is not set (setting it replaces all of this). The CPU
# limit is a backstop: one core is about 300 messages a second (bench/README.md), and it keeps a
# relay whose rules or clients keep cleanup busy from taking a node's other cores.
DEFAULT_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
# Postfix's master runs as root to bind port 25 and hand work to unprivileged children.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"]


def child_names(relay: MailRelay) -> dict[str, str]:
    """Kind → name of each object the relay owns."""
    workload = f"mailrelay-{relay.name}"
    return {
        "ConfigMap": workload,
        "Deployment": workload,
        "StatefulSet": workload,
        "PodDisruptionBudget": workload,
        "Service": relay.spec.service.name,
        "NetworkPolicy": workload,
    }


def workload_kind(relay: MailRelay) -> str:
    """StatefulSet when the queue is persistent (a claim per pod), else Deployment."""
    return "StatefulSet" if relay.spec.queue_storage else "Deployment"


def dkim_secret_name(relay: MailRelay) -> str | None:
    """The Secret holding the DKIM keys: the user's, or the one the operator generates and owns."""
    dkim = relay.spec.dkim
    if dkim is None:
        return None
    return dkim.key_secret or f"mailrelay-{relay.name}-dkim"


def config_files(spec: MailRelaySpec) -> dict[str, str]:
    """Every file of the ConfigMap: Postfix's and, when signing, OpenDKIM's; with OAuth2, the XOAUTH2 relay's."""
    linger = ENDPOINT_WAIT_SECONDS + SESSION_WAIT_SECONDS + DRAIN_SECONDS
    return {**postfix.config_files(spec), **opendkim.config_files(spec), **xoauth2.config_files(spec, linger)}


def selector_labels(relay: MailRelay) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": relay.name}


def labels(relay: MailRelay) -> dict[str, str]:
    return {**selector_labels(relay), "app.kubernetes.io/component": "smtp-relay", MANAGED_BY_LABEL: MANAGED_BY}


def owner_reference(relay: MailRelay) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": relay.name,
        "uid": relay.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(relay: MailRelay, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": relay.namespace, "labels": labels(relay)}
    if relay.uid:
        meta["ownerReferences"] = [owner_reference(relay)]
    return meta


def config_map(relay: MailRelay, files: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(relay, child_names(relay)["ConfigMap"]),
        "data": config_files(relay.spec) if files is None else files,
    }


def config_hash(relay: MailRelay, secret_version: str = "", files: dict[str, str] | None = None) -> str:
    """Digest of everything that needs a Postfix restart: the files and the relay Secret.

    `secret_version` names the Secrets' versions (the caller reads them), so rotating the
    password rolls the pods. Replicas, resources and scheduling are left out on purpose.
    """
    secret = relay.spec.relay.auth_secret if relay.spec.relay else None
    files = config_files(relay.spec) if files is None else files
    payload = {"files": files, "secret": secret, "secretVersion": secret_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _probe(mode: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": [PROBE, mode]},
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def _drain_env(relay: MailRelay) -> list[dict[str, str]]:
    env = [
        {"name": "MAILRELAY_ENDPOINT_WAIT_SECONDS", "value": str(ENDPOINT_WAIT_SECONDS)},
        {"name": "MAILRELAY_SESSION_WAIT_SECONDS", "value": str(SESSION_WAIT_SECONDS)},
        {"name": "MAILRELAY_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)},
        {"name": "MAILRELAY_HANDOFF_SECONDS", "value": str(HANDOFF_SECONDS)},
        {"name": "MAILRELAY_HANDOFF_TARGET", "value": endpoint(relay)},
    ]
    if relay.spec.queue_storage:
        env.append({"name": "MAILRELAY_QUEUE_PERSISTENT", "value": "1"})
    return env


def pod_template(relay: MailRelay, secret_version: str = "", *, digest: str | None = None) -> dict[str, Any]:
    spec = relay.spec
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_names(relay)["ConfigMap"]}},
        {"name": "runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "data", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        sidecar.log_volume(),
    ]
    if not spec.queue_storage:  # else the StatefulSet's claim template provides it
        volumes.insert(2, {"name": "queue", "emptyDir": {}})
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "runtime", "mountPath": RUNTIME_DIR},
        {"name": "queue", "mountPath": QUEUE_DIR},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
        {"name": sidecar.LOG_VOLUME, "mountPath": sidecar.LOG_DIR},
    ]
    if spec.relay and spec.relay.auth_secret:
        volumes.append({"name": "relay-auth", "secret": {"secretName": spec.relay.auth_secret, "defaultMode": 0o400}})
        mounts.append({"name": "relay-auth", "mountPath": SECRET_MOUNT, "readOnly": True})
    dkim_secret = dkim_secret_name(relay)
    if dkim_secret:
        # Root-only in the mount; the entrypoint hands OpenDKIM its own copy, which Postfix cannot read.
        volumes.append({"name": "dkim-key", "secret": {"secretName": dkim_secret, "defaultMode": 0o400}})
        mounts.append({"name": "dkim-key", "mountPath": DKIM_KEY_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "MAIL_FROM_FQDN", "value": spec.mail_from_fqdn}, *_drain_env(relay), *sidecar.relay_env()],
        "ports": [{"name": SMTP_PORT_NAME, "containerPort": postfix.SMTP_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "readinessProbe": _probe("ready", 10, 3),
        "livenessProbe": _probe("live", 20, 3),
        "lifecycle": {"preStop": {"exec": {"command": [DRAIN]}}},
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "resources": spec.resources or DEFAULT_RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
        },
    }
    volumes += xoauth2.volumes(relay, child_names(relay)["ConfigMap"])
    containers = [container, sidecar.container(spec.image, "queue", QUEUE_DIR)]
    if xoauth2.enabled(spec):
        containers.append(xoauth2.container(spec.image))
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    pod_spec.update(_pod_placement(relay))
    return {
        # The user's labels and annotations first: ours win (api.pod refuses clashing keys anyway).
        "metadata": {
            "labels": {**spec.pod.labels, **labels(relay)},
            "annotations": {
                **spec.pod.annotations,
                CONFIG_HASH_ANNOTATION: digest or config_hash(relay, secret_version),
                # `kubectl logs` without -c shows Postfix's log.
                DEFAULT_CONTAINER_ANNOTATION: CONTAINER,
            },
        },
        "spec": pod_spec,
    }


def _workload_metadata(relay: MailRelay, kind: str) -> dict[str, Any]:
    """The workload says which operator version rendered it: a new version's pod template is rolled
    a few relays at a time (controller.rollouts); an owner's edit is not held back."""
    meta = _metadata(relay, child_names(relay)[kind])
    meta["annotations"] = {RENDERED_BY_ANNOTATION: __version__}
    return meta


def deployment(relay: MailRelay, secret_version: str = "", *, digest: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _workload_metadata(relay, "Deployment"),
        "spec": {
            "replicas": relay.spec.replicas,
            "selector": {"matchLabels": selector_labels(relay)},
            # Never fewer ready relays than wanted during a rollout: new pod first, then drain the old
            # one, which hands what it could not deliver to the new one.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod_template(relay, secret_version, digest=digest),
        },
    }


def stateful_set(relay: MailRelay, secret_version: str = "", *, digest: str | None = None) -> dict[str, Any]:
    """A claim per pod, kept when a pod or the set goes away (the StatefulSet default), so a pod that
    comes back with the same ordinal delivers what its predecessor left on the volume."""
    storage = relay.spec.queue_storage
    assert storage is not None
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class:
        claim["storageClassName"] = storage.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _workload_metadata(relay, "StatefulSet"),
        "spec": {
            "replicas": relay.spec.replicas,
            "serviceName": child_names(relay)["StatefulSet"],  # immutable, so not the renamable Service
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(relay)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": pod_template(relay, secret_version, digest=digest),
            "volumeClaimTemplates": [{"metadata": {"name": "queue", "labels": selector_labels(relay)}, "spec": claim}],
        },
    }


def workload(relay: MailRelay, secret_version: str = "", *, digest: str | None = None) -> dict[str, Any]:
    build = stateful_set if relay.spec.queue_storage else deployment
    return build(relay, secret_version, digest=digest)


def pod_disruption_budget(relay: MailRelay) -> dict[str, Any] | None:
    """One voluntary disruption (node drain, eviction) at a time, once there is a replica to spare."""
    if relay.spec.replicas < PDB_MIN_REPLICAS:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(relay, child_names(relay)["PodDisruptionBudget"]),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(relay)}},
    }


def _topology_spread(relay: MailRelay) -> list[dict[str, Any]]:
    """spec.topologySpreadConstraints, each counting this relay's pods unless it names its own selector.
    Without any: spread replicas over nodes when the scheduler can, never blocking scheduling for it."""
    constraints = relay.spec.pod.topology_spread_constraints or DEFAULT_SPREAD
    return [
        {**constraint, "labelSelector": constraint.get("labelSelector") or {"matchLabels": selector_labels(relay)}}
        for constraint in constraints
    ]


def _pod_placement(relay: MailRelay) -> dict[str, Any]:
    """Pull secrets, scheduling and priority from spec; only the fields that are set."""
    pod = relay.spec.pod
    fields: dict[str, Any] = {
        "imagePullSecrets": [{"name": name} for name in pod.image_pull_secrets],
        "affinity": dict(pod.affinity),
        "topologySpreadConstraints": _topology_spread(relay),
        "priorityClassName": pod.priority_class_name,
    }
    return {key: value for key, value in fields.items() if value}


def service(relay: MailRelay) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(relay, child_names(relay)["Service"]),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(relay),
            "ports": [
                {
                    "name": SMTP_PORT_NAME,
                    "port": relay.spec.service.port,
                    "targetPort": SMTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def network_policy(relay: MailRelay) -> dict[str, Any]:
    """Who may reach the relay pods on the SMTP port: their own namespace (unless turned off), plus `spec.clients`.
    The metrics port is open to every source: Prometheus and the operator scrape it from their own
    namespaces, and it serves counts only.

    Each `spec.clients` entry is one peer (its selectors ANDed); the peers are ORed. Egress stays
    open unless restricted to the smarthost's port (25 for direct delivery) and DNS.

    The relay's own pods always reach each other on the SMTP port: a pod that goes away hands its queue
    to the others through the Service (image/postfix/drain.sh), whatever sameNamespace and the egress
    restriction say; without that the policy would drop every hand-off and the mail with the pod.
    """
    tenant = relay.spec.guardrails
    replicas = {"podSelector": {"matchLabels": selector_labels(relay)}}
    # With sameNamespace, `podSelector: {}` admits the replicas already.
    own_namespace: list[dict[str, Any]] = [{"podSelector": {}}] if tenant.same_namespace else [replicas]
    peers = [*own_namespace, *(client.to_k8s() for client in tenant.clients)]
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector_labels(relay)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": peers, "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}]},
            # The metrics sidecar, for Prometheus and the operator's resync wherever they run.
            {"ports": [{"protocol": "TCP", "port": sidecar.PORT_NAME}]},
        ],
    }
    if tenant.egress.restricted:
        smarthost: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": postfix.smarthost_port(relay.spec)}]}
        if tenant.egress.smarthost_networks:
            smarthost["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in tenant.egress.smarthost_networks]
        dns = {"ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]}
        spec["policyTypes"].append("Egress")
        handoff = {"to": [replicas], "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}]}
        spec["egress"] = [dns, smarthost, handoff]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(relay, child_names(relay)["NetworkPolicy"]),
        "spec": spec,
    }


@dataclass(frozen=True)
class Rendered:
    """One relay rendered once: the ConfigMap's files, the restart hash over them, every child."""

    files: dict[str, str]
    config_hash: str
    objects: list[dict[str, Any]]


def render_relay(relay: MailRelay, secret_version: str = "") -> Rendered:
    """The children in the order they should be applied: the policy before the pods it guards, the
    config before its users, Service last. Raises UnsafeValue (a SpecError) for an unsafe file line."""
    files = config_files(relay.spec)
    digest = config_hash(relay, secret_version, files)
    policy = [network_policy(relay)] if relay.spec.guardrails.network_policy else []
    budget = pod_disruption_budget(relay)
    objects = [
        *policy,
        config_map(relay, files),
        workload(relay, secret_version, digest=digest),
        *([budget] if budget else []),
        service(relay),
    ]
    return Rendered(files, digest, objects)


def endpoint(relay: MailRelay) -> str:
    """The Service's address; also the drain's hand-off target (resolved with the pod's search path)."""
    return f"{relay.spec.service.name}.{relay.namespace}.svc:{relay.spec.service.port}"
