"""Pure functions from a ClusterSmarthost (and the tenants admitted to it) to its egress tier's objects.

The egress tier is a relay in the operator's namespace (`egress_relay`): the same pod as a
MailRelay's (probes, preStop drain and hand-off, metrics sidecar, the XOAUTH2 container for an OAuth2
login) with its own Postfix files (render.postfix.smarthost), the sender gate beside Postfix, and
the operator's Secret with its TLS key and login key. Its NetworkPolicy admits the relay pods of the
namespaces the ClusterSmarthost selects, and its own replicas (the drain's hand-off). Every object
is owned by the ClusterSmarthost. The restart hash leaves the tenant files out: a tenant added or
revoked reaches the running pods as a new ConfigMap (mailrelay-gate reloads it), not as a rollout;
a rotated login Secret rolls the egress tier, and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

from mailrelay.api.guardrails import Guardrails
from mailrelay.api.names import API_VERSION, CONFIG_HASH_ANNOTATION, SMARTHOST_KIND
from mailrelay.api.smarthost import ClusterSmarthost
from mailrelay.api.spec import MailRelay, MailRelaySpec, ServiceSpec
from mailrelay.gate import tenants as gate
from mailrelay.gate.logins import SENDER_LOGINS, TENANT_FILES
from mailrelay.render import postfix, relay, sidecar, xoauth2
from mailrelay.render.postfix import smarthost as egress_postfix

COMPONENT = "smarthost-egress"
KEYS_MOUNT = "/etc/mailrelay/egress"  # the operator's Secret: tls.crt, tls.key, login-key
GATE_CONTAINER = "gate"
GATE_COMMAND = "/usr/local/bin/mailrelay-gate"
GATE_RESOURCES = {"requests": {"cpu": "5m", "memory": "24Mi"}, "limits": {"memory": "96Mi"}}
LINGER_SECONDS = relay.ENDPOINT_WAIT_SECONDS + relay.SESSION_WAIT_SECONDS + 5  # Postfix accepts this long
TENANT_POD_LABELS = {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/component": "smtp-relay"}


def name(smarthost: str) -> str:
    """The egress tier's objects' name, for the ClusterSmarthost named `smarthost`."""
    return f"mailrelay-smarthost-{smarthost}"


def relay_name(smarthost: str) -> str:
    """The egress tier's name as a relay: its pods' app.kubernetes.io/instance label."""
    return f"smarthost-{smarthost}"


def keys_secret_name(smarthost: str) -> str:
    """The operator's Secret for this egress tier: its TLS key and certificate, and its login key."""
    return f"{name(smarthost)}-keys"


def hostname(smarthost: str, namespace: str) -> str:
    """The egress Service's name, as tenant relays reach it and its certificate names it."""
    return f"{name(smarthost)}.{namespace}.svc"


def egress_relay(smarthost: ClusterSmarthost, namespace: str) -> MailRelay:
    """The egress tier as the relay it is: its pod, Service and budget are rendered as a relay's."""
    spec = smarthost.spec
    return MailRelay(
        name=relay_name(smarthost.name),
        namespace=namespace,
        uid=smarthost.uid,
        generation=smarthost.generation,
        spec=MailRelaySpec(
            mail_from_fqdn=hostname(smarthost.name, namespace),
            relay=spec.relay,
            message_size_limit=spec.message_size_limit,
            replicas=spec.egress.replicas,
            image=spec.egress.image,
            resources=spec.egress.resources,
            service=ServiceSpec(name=name(smarthost.name), port=postfix.SMTP_PORT),
            guardrails=Guardrails(),
        ),
    )


def owner_reference(smarthost: ClusterSmarthost) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": SMARTHOST_KIND,
        "name": smarthost.name,
        "uid": smarthost.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def config_files(smarthost: ClusterSmarthost, namespace: str, tenants: tuple[gate.Tenant, ...]) -> dict[str, str]:
    spec = smarthost.spec
    pseudo = egress_relay(smarthost, namespace)
    linger = relay.ENDPOINT_WAIT_SECONDS + relay.SESSION_WAIT_SECONDS + relay.DRAIN_SECONDS
    return {
        postfix.MAIN_CF: egress_postfix.main_cf(
            hostname(smarthost.name, namespace), spec.relay, spec.message_size_limit
        ),
        postfix.MASTER_CF: egress_postfix.master_cf(),
        SENDER_LOGINS: postfix.sender_logins(tenants),
        gate.FILE: gate.dump(gate.Document(tenants, spec.egress.replicas)),
        **xoauth2.config_files(pseudo.spec, linger),
    }


def _pod_template(smarthost: ClusterSmarthost, pseudo: MailRelay, digest: str) -> dict[str, Any]:
    template = relay.pod_template(pseudo, digest=digest)
    template["metadata"]["labels"]["app.kubernetes.io/component"] = COMPONENT
    pod = template["spec"]
    pod["volumes"].append(
        {"name": "egress-keys", "secret": {"secretName": keys_secret_name(smarthost.name), "defaultMode": 0o400}}
    )
    postfix_container = pod["containers"][0]
    postfix_container["volumeMounts"].append({"name": "egress-keys", "mountPath": KEYS_MOUNT, "readOnly": True})
    postfix_container["env"] += [
        {"name": "MAILRELAY_EGRESS_DIR", "value": KEYS_MOUNT},
        # The hand-off goes to the other egress replicas: over TLS, with the hand-off login.
        {"name": "MAILRELAY_HANDOFF_TLS", "value": "encrypt"},
        {"name": "MAILRELAY_HANDOFF_SASL", "value": "yes"},
    ]
    pod["containers"].append(
        {
            "name": GATE_CONTAINER,
            "image": pseudo.spec.image,
            "imagePullPolicy": "IfNotPresent",
            "command": [
                GATE_COMMAND,
                "milter",
                egress_postfix.GATE_LISTEN,
                f"{relay.CONFIG_MOUNT}/{gate.FILE}",
                str(LINGER_SECONDS),
            ],
            "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "volumeMounts": [{"name": "config", "mountPath": relay.CONFIG_MOUNT, "readOnly": True}],
            "resources": GATE_RESOURCES,
            "securityContext": {
                "runAsUser": xoauth2.USER,
                "runAsGroup": xoauth2.USER,
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    )
    return template


def network_policy(smarthost: ClusterSmarthost, pseudo: MailRelay) -> dict[str, Any]:
    """SMTP from the relay pods of the namespaces the ClusterSmarthost selects, and from its own
    replicas (the hand-off); the metrics port for Prometheus and the operator, as a relay's."""
    peers = [
        {"namespaceSelector": grant.selector.to_k8s(), "podSelector": {"matchLabels": dict(TENANT_POD_LABELS)}}
        for grant in smarthost.spec.grants
    ]
    peers.append({"podSelector": {"matchLabels": relay.selector_labels(pseudo)}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name(smarthost.name), "namespace": pseudo.namespace},
        "spec": {
            "podSelector": {"matchLabels": relay.selector_labels(pseudo)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"protocol": "TCP", "port": postfix.SMTP_PORT}]},
                {"ports": [{"protocol": "TCP", "port": sidecar.PORT_NAME}]},
            ],
        },
    }


def _owned(obj: dict[str, Any], smarthost: ClusterSmarthost, pseudo: MailRelay) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    meta["labels"] = {**relay.labels(pseudo), "app.kubernetes.io/component": COMPONENT}
    if smarthost.uid:
        meta["ownerReferences"] = [owner_reference(smarthost)]
    return obj


def render_egress(
    smarthost: ClusterSmarthost, namespace: str, tenants: tuple[gate.Tenant, ...], secret_version: str = ""
) -> relay.Rendered:
    """The egress tier's objects, in the order to apply them (policy, config, workload, budget, Service)."""
    pseudo = egress_relay(smarthost, namespace)
    files = config_files(smarthost, namespace, tenants)
    restart = {key: value for key, value in files.items() if key not in TENANT_FILES}
    digest = relay.config_hash(pseudo, secret_version, restart)
    deployment = relay.deployment(pseudo, digest=digest)
    deployment["spec"]["template"] = _pod_template(smarthost, pseudo, digest)
    budget = relay.pod_disruption_budget(pseudo)
    objects = [
        network_policy(smarthost, pseudo),
        relay.config_map(pseudo, files),
        deployment,
        *([budget] if budget else []),
        relay.service(pseudo),
    ]
    return relay.Rendered(files, digest, [_owned(o, smarthost, pseudo) for o in objects])


def template_hash(deployment: dict[str, Any] | None) -> str | None:
    """The restart hash a live egress Deployment's pods run with."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    found = (template.get("metadata") or {}).get("annotations", {}).get(CONFIG_HASH_ANNOTATION)
    return str(found) if found is not None else None
