"""The CRD: valid for every Kubernetes version we support, and enforcing the same rules as `spec`."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate.utils as kv
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from mailrelay.api import conditions as cond
from mailrelay.api import dkim, grammar, guardrails
from mailrelay.api import spec as spec_module
from mailrelay.api.spec import SpecError, parse
from mailrelay.controller.reconcile import reconcile
from mailrelay.render.relay import render_relay

from conftest import CRD_PATH, ROOT, relay_object
from crd_schema import check
from invalid_specs import BASE_SPEC, REFUSED_BY_BOTH
from test_render import FULL, K8S_VERSIONS, by_kind


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_crd_is_a_valid_kubernetes_object(crd: dict[str, Any], version: str) -> None:
    kv.validate(crd, version, strict=True)


def test_crd_names_and_columns(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "mailrelays.mailrelay.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("MailRelay", "mailrelays", ["mr"])
    [version] = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"]["status"] == {}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["FQDN", "Ready", "Replicas", "Delivering", "DKIM", "Age"]
    [replicas] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Replicas"]
    assert replicas["type"] == "integer"


def test_the_status_queue_schema_holds_what_the_operator_writes(crd: dict[str, Any]) -> None:
    """A structural schema prunes unknown fields: every key of status.queue must be declared."""
    from mailrelay.controller import delivery

    queue = delivery.queue_status([delivery.Sample(dict.fromkeys(delivery.QUEUES, 1), 100.0, 1, 1)])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["queue"]
    assert set(queue) == set(schema["properties"])
    for key, value in queue.items():
        assert {"integer": int, "string": str}[schema["properties"][key]["type"]] is type(value)


def _schema_at(crd: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in json_path.lstrip(".").split("."):
        node = node["properties"][part]
    return dict(node)


def test_scale_subresource_points_at_fields_the_operator_keeps(crd: dict[str, Any]) -> None:
    """kubectl scale, HPA and KEDA read and write these paths; each must exist with the right type."""
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    assert _schema_at(crd, scale["specReplicasPath"])["type"] == "integer"
    assert _schema_at(crd, scale["statusReplicasPath"])["type"] == "integer"
    assert _schema_at(crd, scale["labelSelectorPath"])["type"] == "string"
    assert scale["specReplicasPath"] == ".spec.replicas"

    # What the operator writes there selects exactly the relay's pods.
    class NoApi:
        def get(self, *_: Any) -> None:
            return None

    body = relay_object(
        {"mailFromFQDN": "a.example", "relay": {"host": "h.example", "authSecretRef": {"name": "missing"}}}
    )
    outcome = reconcile(NoApi(), body, clock="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    assert outcome.assessment.reason == cond.SECRET_NOT_FOUND
    selector = dict(pair.split("=") for pair in outcome.status["selector"].split(","))
    deployment = by_kind(render_relay(parse(body)))["Deployment"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_crd_defaults_are_the_operator_defaults(crd: dict[str, Any]) -> None:
    schema = _spec_schema(crd)
    assert tuple(schema["allowedNetworks"]["default"]) == spec_module.DEFAULT_NETWORKS
    assert schema["messageSizeLimitBytes"]["default"] == spec_module.DEFAULT_MESSAGE_SIZE_LIMIT
    assert schema["messageSizeLimitBytes"]["minimum"] == spec_module.MIN_MESSAGE_SIZE_LIMIT
    assert schema["replicas"]["default"] == 1 and schema["replicas"]["maximum"] == spec_module.MAX_REPLICAS
    assert schema["relay"]["properties"]["port"]["default"] == spec_module.Relay.port
    assert schema["relay"]["properties"]["tls"]["default"] == spec_module.Relay.tls
    assert tuple(schema["relay"]["properties"]["tls"]["enum"]) == spec_module.TLS_LEVELS
    assert schema["service"]["properties"]["name"]["default"] == spec_module.ServiceSpec.name
    assert schema["service"]["properties"]["port"]["default"] == spec_module.ServiceSpec.port
    assert schema["rewrite"]["properties"]["rules"]["maxItems"] == spec_module.MAX_RULES
    dkim_schema = schema["dkim"]["properties"]
    assert dkim_schema["selector"]["default"] == dkim.DEFAULT_SELECTOR
    assert dkim_schema["keyType"]["default"] == dkim.DEFAULT_KEY_TYPE
    assert tuple(dkim_schema["keyType"]["enum"]) == dkim.KEY_TYPES
    assert dkim_schema["rsaBits"]["default"] == dkim.DEFAULT_RSA_BITS
    assert tuple(dkim_schema["rsaBits"]["enum"]) == dkim.RSA_SIZES
    assert set(dkim_schema) == dkim.FIELDS
    limits = schema["limits"]["properties"]
    for name, attribute, high in guardrails._LIMITS:
        assert limits[name]["default"] == getattr(guardrails.Limits, attribute)
        assert (limits[name]["minimum"], limits[name]["maximum"]) == (0, high)
    assert schema["networkPolicy"]["properties"]["enabled"]["default"] is guardrails.Guardrails.network_policy
    assert schema["clients"]["maxItems"] == guardrails.MAX_CLIENTS
    assert schema["recipients"]["properties"]["allowDomains"]["maxItems"] == guardrails.MAX_ALLOW_DOMAINS
    assert schema["egress"]["properties"]["smarthostNetworks"]["maxItems"] == guardrails.MAX_EGRESS_NETWORKS


def example_relays() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "MailRelay"]
    return docs


GOOD = [
    relay_object(FULL),
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


@pytest.mark.parametrize("obj", GOOD + example_relays(), ids=lambda o: o["metadata"]["name"] + str(id(o))[-4:])
def test_good_samples_pass_the_crd_and_the_operator(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    assert check(crd, obj) == []
    parse(obj)


def _with(**changes: Any) -> dict[str, Any]:
    obj = relay_object({"mailFromFQDN": "apps.example.com"})
    for dotted, value in changes.items():
        target = obj
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return obj


# (id, object, what the CRD says). Each is also refused by `spec.parse`: the two agree.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no fqdn", relay_object({}), "'mailFromFQDN' is a required property"),
    ("fqdn single label", _with(spec__mailFromFQDN="localhost"), "does not match"),
    ("fqdn with space", _with(spec__mailFromFQDN="a b.example"), "does not match"),
    ("long name", _with(metadata__name="r" * 51), "metadata.name must be at most 50 characters"),
    (
        "wrapper on 587",
        _with(spec__relay={"host": "smtp.example.net", "tls": "Wrapper"}),
        "tls Wrapper (SMTPS) needs port 465",
    ),
    (
        "wrapper without port defaults to 587",
        _with(spec__relay={"host": "h.example", "tls": "Wrapper", "port": 25}),
        "tls Wrapper (SMTPS) needs port 465",
    ),
    ("unknown tls", _with(spec__relay={"host": "h.example", "tls": "Starttls"}), "is not one of"),
    (
        "keepDomain with at-sign",
        _with(spec__rewrite={"keepDomains": ["me@x.example"]}),
        "every keepDomains entry must be a host name",
    ),
    (
        "keepDomain with double dot",
        _with(spec__rewrite={"keepDomains": ["x..example"]}),
        "every keepDomains entry must be a host name",
    ),
    (
        "rule with unescaped slash",
        _with(spec__rewrite={"rules": [{"pattern": "a/b", "replacement": "x@a.example"}]}),
        "pattern must write a literal '/' as '\\/'",
    ),
    (
        "rule with lone backslash",
        _with(spec__rewrite={"rules": [{"pattern": "ab\\", "replacement": "x@a.example"}]}),
        "must not end with a lone backslash",
    ),
    (
        "rule with newline",
        _with(spec__rewrite={"rules": [{"pattern": "a\nb", "replacement": "x@a.example"}]}),
        "does not match '^[!-~]+$'",
    ),
    (
        "replacement with space",
        _with(spec__rewrite={"rules": [{"pattern": "a", "replacement": "x @a.example"}]}),
        "does not match '^[!-~]+$'",
    ),
    (
        "rule without replacement",
        _with(spec__rewrite={"rules": [{"pattern": "a"}]}),
        "'replacement' is a required property",
    ),
    ("open relay", _with(spec__allowedNetworks=["0.0.0.0/0"]), "would make an open relay"),
    ("open relay v6", _with(spec__allowedNetworks=["::/0"]), "would make an open relay"),
    ("no networks", _with(spec__allowedNetworks=[]), "should be non-empty"),
    ("network not CIDR", _with(spec__allowedNetworks=["10.0.0.0"]), "does not match"),
    ("size too small", _with(spec__messageSizeLimitBytes=100), "is less than the minimum of 1024"),
    ("replicas negative", _with(spec__replicas=-1), "is less than the minimum of 0"),
    ("service name", _with(spec__service={"name": "Mail"}), "does not match"),
    ("relay without host", _with(spec__relay={"port": 25}), "'host' is a required property"),
    (
        "dkim domain unrelated",
        _with(spec__dkim={"domain": "example.org"}),
        "dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    (
        "dkim domain a subdomain",
        _with(spec__dkim={"domain": "eu.apps.example.com"}),
        "dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    (
        "dkim domain suffix but no parent",
        _with(spec__dkim={"domain": "ps.example.com"}),
        "dkim.domain must be mailFromFQDN or a parent domain of it",
    ),
    ("dkim domain upper case", _with(spec__dkim={"domain": "Example.com"}), "does not match"),
    ("dkim domain single label", _with(spec__dkim={"domain": "com"}), "does not match"),
    ("dkim selector with dot", _with(spec__dkim={"selector": "a.b"}), "does not match"),
    ("dkim selector too long", _with(spec__dkim={"selector": "s" * 53}), "is too long"),
    ("dkim key type", _with(spec__dkim={"keyType": "DSA"}), "is not one of"),
    ("dkim rsa bits", _with(spec__dkim={"rsaBits": 1024}), "is not one of"),
    ("dkim secret ref without name", _with(spec__dkim={"keySecretRef": {}}), "'name' is a required property"),
    ("dkim secret ref bad name", _with(spec__dkim={"keySecretRef": {"name": "My_Key"}}), "does not match"),
    ("pull secret bad name", _with(spec__imagePullSecrets=[{"name": "Mirror_Creds"}]), "does not match"),
    ("pull secret without name", _with(spec__imagePullSecrets=[{}]), "'name' is a required property"),
    (
        "affinity term without topologyKey",
        _with(
            spec__affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}
        ),
        "'topologyKey' is a required property",
    ),
    (
        "affinity bad operator",
        _with(
            spec__affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Equals"}]}]
                    }
                }
            }
        ),
        "is not one of",
    ),
    (
        "spread skew zero",
        _with(
            spec__topologySpreadConstraints=[
                {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
            ]
        ),
        "is less than the minimum of 1",
    ),
    (
        "spread unknown policy",
        _with(spec__topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never"}]),
        "is not one of",
    ),
    (
        "too many spread constraints",
        _with(
            spec__topologySpreadConstraints=[
                {"maxSkew": 1, "topologyKey": f"k{i}", "whenUnsatisfiable": "DoNotSchedule"} for i in range(9)
            ]
        ),
        "is too long",
    ),
    ("priority class with capitals", _with(spec__priorityClassName="Mail-Critical"), "does not match"),
    (
        "pod label on the selector",
        _with(spec__podLabels={"app.kubernetes.io/name": "other"}),
        "podLabels must not set the operator's own labels",
    ),
    (
        "pod label in our prefix",
        _with(spec__podLabels={"mailrelay.dev/x": "y"}),
        "podLabels must not set the operator's own labels",
    ),
    ("pod label key with space", _with(spec__podLabels={"cost center": "x"}), "podLabels keys must be label keys"),
    ("pod label key too long", _with(spec__podLabels={"a" * 64: "x"}), "podLabels keys must be label keys"),
    ("pod label value with slash", _with(spec__podLabels={"team": "a/b"}), "does not match"),
    ("pod label value too long", _with(spec__podLabels={"team": "x" * 64}), "is too long"),
    ("too many pod labels", _with(spec__podLabels={f"k{i}": "v" for i in range(33)}), "has too many properties"),
    (
        "pod annotation config hash",
        _with(spec__podAnnotations={"mailrelay.dev/config-hash": "x"}),
        "podAnnotations must not set the operator's own annotations",
    ),
    (
        "pod annotation key bad prefix",
        _with(spec__podAnnotations={"Example.com/x": "y"}),
        "podAnnotations keys must be annotation keys",
    ),
    ("pod annotation value too long", _with(spec__podAnnotations={"note": "x" * 4097}), "is too long"),
    # Tenant guardrails.
    ("policy switch not a boolean", _with(spec__networkPolicy={"enabled": "no"}), "is not of type 'boolean'"),
    (
        "client without a selector",
        _with(spec__clients=[{}]),
        "each clients entry needs a namespaceSelector, a podSelector or both",
    ),
    ("too many clients", _with(spec__clients=[{"podSelector": {}}] * 21), "is too long"),
    (
        "a podSelector alone adds nothing",
        _with(spec__clients=[{"podSelector": {"matchLabels": {"app": "web"}}}]),
        "a clients entry with only a podSelector selects pods of the relay's own namespace",
    ),
    (
        "own namespace off without the policy",
        _with(spec__networkPolicy={"enabled": False, "sameNamespace": False}),
        "sameNamespace: false needs enabled: true",
    ),
    (
        "own namespace off and no clients",
        _with(spec__networkPolicy={"sameNamespace": False}),
        "with networkPolicy.sameNamespace: false, clients must admit some pods",
    ),
    (
        "In without values",
        _with(spec__clients=[{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]),
        "values must be non-empty for In and NotIn",
    ),
    (
        "DoesNotExist with values",
        _with(
            spec__clients=[
                {"podSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["a"]}]}}
            ]
        ),
        "and empty for Exists and DoesNotExist",
    ),
    (
        "unknown selector operator",
        _with(
            spec__clients=[
                {"podSelector": {"matchExpressions": [{"key": "team", "operator": "Contains", "values": ["a"]}]}}
            ]
        ),
        "is not one of",
    ),
    (
        "selector key with a space",
        _with(spec__clients=[{"podSelector": {"matchExpressions": [{"key": "my team", "operator": "Exists"}]}}]),
        "does not match",
    ),
    (
        "label value with a slash",
        _with(spec__clients=[{"podSelector": {"matchLabels": {"app": "a/b"}}}]),
        "does not match",
    ),
    (
        "label key with a space",
        _with(spec__clients=[{"namespaceSelector": {"matchLabels": {"my team": "a"}}}]),
        "every matchLabels key must be a label key",
    ),
    (
        "label key prefix too long",
        _with(spec__clients=[{"namespaceSelector": {"matchLabels": {("a" * 63 + ".") * 4 + "com/team": "a"}}}]),
        "with a prefix of at most 253 characters",
    ),
    (
        "expression key prefix too long",
        _with(
            spec__clients=[
                {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": ("a" * 63 + ".") * 4 + "com/team", "operator": "Exists"}]
                    }
                }
            ]
        ),
        "a label key's prefix must be at most 253 characters",
    ),
    (
        "label key name too long",
        _with(spec__clients=[{"podSelector": {"matchLabels": {"x.example/" + "k" * 64: "a"}}}]),
        "every matchLabels key must be a label key",
    ),
    (
        "label value too long",
        _with(spec__clients=[{"namespaceSelector": {"matchLabels": {"team": "a" * 64}}}]),
        "is too long",
    ),
    (
        "egress restricted without the policy",
        _with(spec__networkPolicy={"enabled": False}, spec__egress={"restricted": True}),
        "egress.restricted needs networkPolicy.enabled",
    ),
    (
        "smarthostNetworks without restricted",
        _with(spec__egress={"smarthostNetworks": ["203.0.113.10/32"]}),
        "smarthostNetworks only takes effect with restricted: true",
    ),
    (
        "smarthostNetworks not a CIDR",
        _with(spec__egress={"restricted": True, "smarthostNetworks": ["smtp.example"]}),
        "does not match",
    ),
    ("negative message limit", _with(spec__limits={"messagesPerMinute": -1}), "is less than the minimum of 0"),
    ("too many connections", _with(spec__limits={"concurrentConnections": 101}), "is greater than the maximum of 100"),
    ("recipient limit a string", _with(spec__limits={"recipientsPerMinute": "100"}), "is not of type 'integer'"),
    ("empty allowDomains", _with(spec__recipients={"allowDomains": []}), "should be non-empty"),
    (
        "allowDomain with at-sign",
        _with(spec__recipients={"allowDomains": ["ops@example.org"]}),
        "every allowDomains entry must be a domain such as example.com",
    ),
    (
        "allowDomain with a regexp",
        _with(spec__recipients={"allowDomains": [".*"]}),
        "every allowDomains entry must be a domain such as example.com",
    ),
] + [(name, relay_object({**BASE_SPEC, **changes}), message) for name, changes, message, _ in REFUSED_BY_BOTH]


@pytest.mark.parametrize(("obj", "message"), [(o, m) for _, o, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_samples_are_refused_by_the_crd_and_the_operator(
    crd: dict[str, Any], obj: dict[str, Any], message: str
) -> None:
    errors = check(crd, obj)
    assert any(message in e for e in errors), errors
    with pytest.raises(SpecError):
        parse(obj)


def test_the_crd_uses_the_operators_grammar() -> None:
    """One grammar: the CRD carries the very expressions `spec` checks with."""
    text = (ROOT / "crds" / "mailrelay.dev_mailrelays.yaml").read_text()
    for expression in (
        grammar.RULE_PATTERN,
        grammar.IPV4,
        grammar.HOSTNAME,
        grammar.ALPHA_TOP_LABEL,
        grammar.QUANTITY,
        grammar.QUALIFIED_NAME,
        grammar.LABEL_VALUE,
    ):
        assert expression in text, expression
    helm = ROOT / "manifests" / "helm" / "mailrelay-operator" / "crds" / "mailrelay.dev_mailrelays.yaml"
    assert helm.read_text() == text


def test_every_rule_touching_a_string_or_list_is_bounded(crd: dict[str, Any]) -> None:
    """CEL's cost budget is estimated from maxLength/maxItems/maxProperties: none may be unbounded."""
    unbounded = []

    def walk(node: dict[str, Any], path: str, parents_bounded: bool) -> None:
        kind = node.get("type")
        bounded = {
            "string": "maxLength" in node or "enum" in node,
            "array": "maxItems" in node,
            "object": "maxProperties" in node or "additionalProperties" not in node,
        }.get(str(kind), True)
        if node.get("x-kubernetes-validations") and not (bounded and parents_bounded):
            unbounded.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}", parents_bounded and bounded)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}.{key}", parents_bounded and bounded)

    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    walk(spec, "spec", True)
    assert unbounded == []


def test_every_cel_rule_is_exercised(crd: dict[str, Any]) -> None:
    """A rule no sample can trip is a rule nobody knows works."""
    messages = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            messages.update(r["message"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crd)
    tripped = {m for _, obj, _ in BAD for e in check(crd, obj) for m in messages if m in e}
    assert messages and tripped == messages


def test_a_cel_rule_sees_defaults(crd: dict[str, Any]) -> None:
    """tls Wrapper with no port: the port defaults to 587, so the rule must refuse it."""
    obj = _with(spec__relay={"host": "smtp.example.net", "tls": "Wrapper"})
    assert check(crd, obj) == ["spec.relay: tls Wrapper (SMTPS) needs port 465"]
    fixed = copy.deepcopy(obj)
    fixed["spec"]["relay"]["port"] = 465
    assert check(crd, fixed) == []


_CRD = yaml.safe_load(CRD_PATH.read_text())  # hypothesis runs many examples per test: no function fixture


# Label keys and values: the CRD and the operator accept exactly the same ones (the operator's rules
# were also compared with the API server's own NetworkPolicy validation).
_prefix = hst.sampled_from(
    [
        "",
        "",
        "example.com/",
        "a.b-c.d/",
        "-x.com/",
        "A.com/",
        "x..y/",
        "/",
        "a-/",
        ("a" * 63 + ".") * 3 + "a" * 61 + "/",
        ("a" * 63 + ".") * 3 + "a" * 62 + "/",
        "a" * 64 + ".com/",
    ]
)
_name = hst.from_regex(r"\A[a-zXYZ019_./-]{0,64}\Z") | hst.from_regex(r"\Aa[a-z0-9_.-]{0,62}z\Z")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(key=hst.tuples(_prefix, _name).map("".join), value=_name)
def test_label_keys_and_values_the_crd_and_the_operator_agree(key: str, value: str) -> None:
    crd = _CRD
    obj = _with(
        spec__clients=[
            {
                "namespaceSelector": {"matchLabels": {key: value}},
                "podSelector": {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]},
            }
        ]
    )
    try:
        parse(obj)
        operator_accepts = True
    except SpecError:
        operator_accepts = False
    assert (check(crd, obj) == []) == operator_accepts, (key, value, check(crd, obj))
