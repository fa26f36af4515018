"""The Postfix pods: replicas, image, resources, scheduling, labels, and the queue's storage."""

from __future__ import annotations

from typing import Any

from mailrelay.api import grammar, pod, queue, scheduling, spec

from crd.schema import array, cel_regex, integer, obj, rule, schema, string, upstream, whole

REPLICAS: dict[str, Any] = integer(
    "Number of Postfix pods; 0 stops the relay.", minimum=0, maximum=spec.MAX_REPLICAS, default=1
)

IMAGE: dict[str, Any] = string(
    "The Postfix image; defaults to the one released with the operator.",
    minLength=1,
    maxLength=512,
    pattern=whole(grammar.PRINTABLE),
)


def _quantities() -> dict[str, Any]:
    """A core/v1 ResourceList: resource names to non-negative quantities."""
    return obj(
        maxProperties=scheduling.MAX_RESOURCE_ENTRIES,
        values=schema(int_or_string=True, any_of=[integer(), string()], pattern=whole(grammar.QUANTITY), minimum=0),
        rules=[
            rule(
                f'self.all(k, k.size() <= 316 && k.matches(r"{whole(grammar.QUALIFIED_NAME)}"))',
                "resource names must be qualified names such as cpu or example.com/device",
            ),
        ],
    )


RESOURCES: dict[str, Any] = obj(
    (
        "Compute resources of the Postfix container. Without it: requests cpu 10m and memory 32Mi, limits "
        "cpu 1 and memory 256Mi. Setting it replaces all four, so keep a cpu limit unless the namespace's "
        "LimitRange sets one."
    ),
    properties={
        "limits": _quantities(),
        "requests": _quantities(),
    },
)

NODE_SELECTOR: dict[str, Any] = obj(
    maxProperties=scheduling.MAX_SELECTOR_ENTRIES,
    values=string(maxLength=63, pattern=whole(grammar.LABEL_VALUE)),
    rules=[
        rule(
            (f'self.all(k, k.size() <= 316 && k.matches(r"{whole(grammar.QUALIFIED_NAME)}"))'),
            "nodeSelector keys must be label keys such as kubernetes.io/os",
        ),
    ],
)

TOLERATIONS: dict[str, Any] = array(
    obj(
        properties={
            "key": string(
                maxLength=316,
                pattern=whole(f"({grammar.QUALIFIED_NAME})?"),
            ),
            "operator": string(enum=list(scheduling.TOLERATION_OPERATORS)),
            "value": string(maxLength=63, pattern=whole(grammar.LABEL_VALUE)),
            "effect": string(enum=list(scheduling.TOLERATION_EFFECTS)),
            "tolerationSeconds": integer(),
        },
        rules=[
            rule(
                '!(has(self.operator) && self.operator == "Exists") || !has(self.value) || self.value == ""',
                "a toleration with operator Exists must not have a value",
            ),
            rule(
                '(has(self.key) && self.key != "") || (has(self.operator) && self.operator == "Exists")',
                "a toleration without a key must use operator Exists",
            ),
            rule(
                '!has(self.tolerationSeconds) || (has(self.effect) && self.effect == "NoExecute")',
                "tolerationSeconds is only allowed with the effect NoExecute",
            ),
        ],
    ),
    maxItems=scheduling.MAX_TOLERATIONS,
)

IMAGE_PULL_SECRETS: dict[str, Any] = array(
    obj(
        required=["name"],
        properties={
            "name": string(
                maxLength=253,
                pattern=whole(grammar.DNS_SUBDOMAIN),
            ),
        },
    ),
    (
        "Secrets in the relay's namespace for pulling the Postfix image from a private registry, so a "
        "mirror needs no change to the namespace's default ServiceAccount."
    ),
    maxItems=pod.MAX_PULL_SECRETS,
    list_type="map",
    list_map_keys=["name"],
)

AFFINITY: dict[str, Any] = upstream(
    "affinity", "Node and pod (anti-)affinity of the Postfix pods, as in a pod spec (core/v1 Affinity)."
)

TOPOLOGY_SPREAD_CONSTRAINTS: dict[str, Any] = array(
    upstream("topologySpreadConstraint"),
    (
        "How the Postfix pods spread over zones or nodes, as in a pod spec (core/v1 "
        "TopologySpreadConstraint). A constraint without labelSelector counts this relay's pods. When "
        "set, these replace the operator's default spread."
    ),
    maxItems=pod.MAX_SPREAD_CONSTRAINTS,
    list_type="atomic",
)

PRIORITY_CLASS_NAME: dict[str, Any] = string(
    "PriorityClass of the Postfix pods, so mail keeps running when nodes are short of room.",
    maxLength=253,
    pattern=whole(grammar.DNS_SUBDOMAIN),
)

POD_LABELS: dict[str, Any] = obj(
    (
        "Extra labels on the Postfix pods (cost centres, mesh opt-out). The operator's own keys "
        "(app.kubernetes.io/name, instance, component, managed-by, pod-template-hash and mailrelay.dev/*) "
        "are refused: they select the pods."
    ),
    maxProperties=pod.MAX_POD_LABELS,
    values=string(maxLength=63, pattern="^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"),
    rules=[
        rule(
            (f"self.all(k, k.size() <= 317 && k.matches({cel_regex(grammar.LABEL_KEY)}))"),
            (
                "podLabels keys must be label keys: an optional DNS subdomain and '/', then 1 to 63 letters, "
                "digits, '-', '_' or '.'"
            ),
        ),
        rule(
            (
                'self.all(k, !(k in ["app.kubernetes.io/name", "app.kubernetes.io/instance", '
                '"app.kubernetes.io/component", "app.kubernetes.io/managed-by", "pod-template-hash"]) && '
                '!k.startsWith("mailrelay.dev/"))'
            ),
            (
                "podLabels must not set the operator's own labels (app.kubernetes.io/name, instance, component, "
                "managed-by, pod-template-hash, mailrelay.dev/*)"
            ),
        ),
    ],
)

POD_ANNOTATIONS: dict[str, Any] = obj(
    (
        "Extra annotations on the Postfix pods (e.g. sidecar.istio.io/inject). Keys under mailrelay.dev/ "
        "are the operator's and are refused."
    ),
    maxProperties=pod.MAX_POD_ANNOTATIONS,
    values=string(maxLength=pod.MAX_ANNOTATION_VALUE),
    rules=[
        rule(
            (f"self.all(k, k.size() <= 317 && k.matches({cel_regex(grammar.LABEL_KEY)}))"),
            (
                "podAnnotations keys must be annotation keys: an optional DNS subdomain and '/', then 1 to 63 "
                "letters, digits, '-', '_' or '.'"
            ),
        ),
        rule(
            '!self.exists(k, k.startsWith("mailrelay.dev/"))',
            "podAnnotations must not set the operator's own annotations (mailrelay.dev/*)",
        ),
    ],
)

QUEUE: dict[str, Any] = obj(
    (
        "Where Postfix keeps accepted mail until it is delivered. Without storage, an emptyDir: a pod "
        "that goes away hands its queue to the other replicas first, but a node failure or a SIGKILL "
        "loses it. With storage, each pod's queue is a PersistentVolumeClaim (the relay runs as a "
        "StatefulSet) and the next pod on that volume delivers what was left."
    ),
    properties={
        "storage": obj(
            "A PersistentVolumeClaim per pod for the queue; its size cannot be changed here later.",
            required=["size"],
            properties={
                "size": string(
                    "Requested capacity, e.g. 1Gi.",
                    maxLength=queue.MAX_QUEUE_SIZE_LENGTH,
                    pattern=whole(queue.QUEUE_SIZE),
                ),
                "storageClassName": string(
                    "The StorageClass; the cluster's default class when unset.",
                    minLength=1,
                    maxLength=253,
                    pattern=whole(grammar.HOSTNAME),
                ),
            },
            rules=[
                rule(
                    r"!self.size.matches('^0+(\\.0+)?[A-Za-z]*$')",
                    "queue.storage.size must be more than zero",
                ),
            ],
        ),
    },
)
