"""Pure functions from a validated MailRelay to the ConfigMap, Deployment, Service and NetworkPolicy it owns.

No I/O and no clock: the same relay always renders the same bytes, which is what lets the
controller compare live objects with these and write only when something really differs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mailrelay import exporter, postfix
from mailrelay.spec import API_VERSION, KIND, MailRelay

FIELD_MANAGER = "mailrelay-operator"
MANAGED_BY = "mailrelay-operator"
CONFIG_HASH_ANNOTATION = "mailrelay.dev/config-hash"
CONTAINER = "postfix"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
SMTP_PORT_NAME = "smtp"
DNS_PORT = 53

# Paths inside the relay image; image/postfix/entrypoint.sh uses the same defaults.
CONFIG_MOUNT = "/etc/mailrelay/config"
SECRET_MOUNT = "/etc/mailrelay/secret"
RUNTIME_DIR = "/run/mailrelay"
POSTFIX_CONFIG_DIR = f"{RUNTIME_DIR}/postfix"
QUEUE_DIR = "/var/spool/postfix"
DATA_DIR = "/var/lib/postfix"
PROBE = "/usr/local/bin/mailrelay-probe"
DRAIN = "/usr/local/bin/mailrelay-drain"
TERMINATION_GRACE_SECONDS = 60
DRAIN_SECONDS = 50  # leaves the kubelet time to stop Postfix after the drain gave up

DEFAULT_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
# Postfix's master runs as root to bind port 25 and hand work to unprivileged children.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"]


def child_names(relay: MailRelay) -> dict[str, str]:
    """Kind → name of each object the relay owns."""
    return {"ConfigMap": f"mailrelay-{relay.name}", "Deployment": f"mailrelay-{relay.name}",
            "Service": relay.spec.service.name, "NetworkPolicy": f"mailrelay-{relay.name}"}


def selector_labels(relay: MailRelay) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/instance": relay.name}


def label_selector(match: dict[str, str]) -> str:
    """The selector string form (`a=b,c=d`) of equality labels, as status.selector and list calls take it."""
    return ",".join(f"{key}={value}" for key, value in sorted(match.items()))


def labels(relay: MailRelay) -> dict[str, str]:
    return {**selector_labels(relay), "app.kubernetes.io/component": "smtp-relay",
            "app.kubernetes.io/managed-by": MANAGED_BY}


def owner_reference(relay: MailRelay) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": relay.name, "uid": relay.uid,
            "controller": True, "blockOwnerDeletion": True}


def _metadata(relay: MailRelay, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": relay.namespace, "labels": labels(relay)}
    if relay.uid:
        meta["ownerReferences"] = [owner_reference(relay)]
    return meta


def config_map(relay: MailRelay) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(relay, child_names(relay)["ConfigMap"]),
            "data": postfix.config_files(relay.spec)}


def config_hash(relay: MailRelay, secret_version: str = "") -> str:
    """Digest of everything that needs a Postfix restart: the files and the relay Secret.

    `secret_version` is a digest of the Secret's data (the caller reads it), so rotating the
    password rolls the pods. Replicas, resources and scheduling are left out on purpose.
    """
    secret = relay.spec.relay.auth_secret if relay.spec.relay else None
    payload = {"files": postfix.config_files(relay.spec), "secret": secret, "secretVersion": secret_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _probe(mode: str, period: int, failures: int) -> dict[str, Any]:
    return {"exec": {"command": [PROBE, mode]}, "periodSeconds": period, "timeoutSeconds": 10,
            "failureThreshold": failures}


def deployment(relay: MailRelay, secret_version: str = "") -> dict[str, Any]:
    spec = relay.spec
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_names(relay)["ConfigMap"]}},
        {"name": "runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "queue", "emptyDir": {}},
        {"name": "data", "emptyDir": {}},
        exporter.log_volume(),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "runtime", "mountPath": RUNTIME_DIR},
        {"name": "queue", "mountPath": QUEUE_DIR},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": exporter.LOG_VOLUME, "mountPath": exporter.LOG_DIR},
    ]
    if spec.relay and spec.relay.auth_secret:
        volumes.append({"name": "relay-auth", "secret": {"secretName": spec.relay.auth_secret,
                                                         "defaultMode": 0o400}})
        mounts.append({"name": "relay-auth", "mountPath": SECRET_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "MAIL_FROM_FQDN", "value": spec.mail_from_fqdn},
                {"name": "MAILRELAY_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)}, *exporter.relay_env()],
        "ports": [{"name": SMTP_PORT_NAME, "containerPort": postfix.SMTP_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "readinessProbe": _probe("ready", 10, 3),
        "livenessProbe": _probe("live", 20, 3),
        "lifecycle": {"preStop": {"exec": {"command": [DRAIN]}}},
        "resources": spec.resources or DEFAULT_RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
        },
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container, exporter.container(spec.image, "queue", QUEUE_DIR)],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    pod_spec.update(_pod_placement(relay))
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(relay, child_names(relay)["Deployment"]),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(relay)},
            # Never fewer ready relays than wanted during a rollout: new pod first, then drain the old.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                # The user's labels and annotations first: ours win (spec_pod refuses clashing keys anyway).
                "metadata": {"labels": {**spec.pod.labels, **labels(relay)},
                             "annotations": {**spec.pod.annotations,
                                             CONFIG_HASH_ANNOTATION: config_hash(relay, secret_version),
                                             # `kubectl logs` without -c shows Postfix's log.
                                             DEFAULT_CONTAINER_ANNOTATION: CONTAINER}},
                "spec": pod_spec,
            },
        },
    }


def _topology_spread(relay: MailRelay) -> list[dict[str, Any]]:
    """spec.topologySpreadConstraints, each counting this relay's pods unless it names its own selector."""
    return [{**constraint, "labelSelector": constraint.get("labelSelector") or {"matchLabels": selector_labels(relay)}}
            for constraint in relay.spec.pod.topology_spread_constraints]


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
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(relay, child_names(relay)["Service"]),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(relay),
            "ports": [{"name": SMTP_PORT_NAME, "port": relay.spec.service.port,
                       "targetPort": SMTP_PORT_NAME, "protocol": "TCP"}],
        },
    }


def network_policy(relay: MailRelay) -> dict[str, Any]:
    """Who may reach the relay pods on the SMTP port: their own namespace (unless turned off), plus `spec.clients`.
    The metrics port is open to every source: Prometheus and the operator scrape it from their own
    namespaces, and it serves counts only.

    Each `spec.clients` entry is one peer (its selectors ANDed); the peers are ORed. Egress stays
    open unless restricted to the smarthost's port (25 for direct delivery) and DNS.
    """
    guard = relay.spec.guard
    own_namespace: list[dict[str, Any]] = [{"podSelector": {}}] if guard.same_namespace else []
    peers = [*own_namespace, *(client.to_k8s() for client in guard.clients)]
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector_labels(relay)},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}]},
                    # The metrics sidecar, for Prometheus and the operator's resync wherever they run.
                    {"ports": [{"protocol": "TCP", "port": exporter.PORT_NAME}]}],
    }
    if guard.egress.restricted:
        smarthost: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": postfix.smarthost_port(relay.spec)}]}
        if guard.egress.smarthost_networks:
            smarthost["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in guard.egress.smarthost_networks]
        dns = {"ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]}
        spec["policyTypes"].append("Egress")
        spec["egress"] = [dns, smarthost]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _metadata(relay, child_names(relay)["NetworkPolicy"]), "spec": spec}


def render(relay: MailRelay, secret_version: str = "") -> list[dict[str, Any]]:
    """The children, in the order they should be applied: the policy before the pods it guards,
    the config before its users."""
    policy = [network_policy(relay)] if relay.spec.guard.network_policy else []
    return [*policy, config_map(relay), deployment(relay, secret_version), service(relay)]


def endpoint(relay: MailRelay) -> str:
    return f"{relay.spec.service.name}.{relay.namespace}.svc:{relay.spec.service.port}"
