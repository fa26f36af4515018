"""The CRD: valid for every Kubernetes version we support, and enforcing the same rules as `spec`."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from mailrelay.api import conditions as cond
from mailrelay.api import dkim, grammar, guardrails
from mailrelay.api import spec as spec_module
from mailrelay.api.spec import SpecError, parse
from mailrelay.render.relay import render_relay

from support.crd_schema import check
from support.fake_api import FakeApi
from support.invalid_specs import INVALID, Invalid, changed
from support.kube_schemas import K8S_VERSIONS, validate
from support.one_pass import one_pass
from support.paths import CRD_PATH, ROOT, SMARTHOST_CRD_PATH
from support.samples import GOOD, by_kind, example_relays, relay_object


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_crd_is_a_valid_kubernetes_object(crd: dict[str, Any], version: str) -> None:
    validate(crd, version)


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
    body = relay_object(
        {"mailFromFQDN": "a.example", "relay": {"host": "h.example", "authSecretRef": {"name": "missing"}}}
    )
    done = one_pass(FakeApi(), body)
    assert done.plan.assessment.reason == cond.SECRET_NOT_FOUND and done.plan.status is not None
    selector = dict(pair.split("=") for pair in done.plan.status["selector"].split(","))
    deployment = by_kind(render_relay(parse(body)).objects)["Deployment"]
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


GOOD_AND_EXAMPLES = GOOD + example_relays()


@pytest.mark.parametrize(
    "obj", GOOD_AND_EXAMPLES, ids=[f"{o['metadata']['name']}-{i}" for i, o in enumerate(GOOD_AND_EXAMPLES)]
)
def test_good_samples_pass_the_crd_and_the_operator(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    assert check(crd, obj) == []
    parse(obj)


@pytest.mark.parametrize("case", INVALID, ids=lambda r: r.id)
def test_bad_samples_are_refused_by_whom_the_table_says(crd: dict[str, Any], case: Invalid) -> None:
    """Exactly: a row the offline check should not refuse (a CRD gap, or what only the API server
    enforces: strict field validation, list types) fails here once the check does refuse it."""
    errors = check(crd, case.obj)
    if case.by_crd and case.offline:
        assert any(case.crd in e for e in errors), errors
    else:
        assert errors == []
    if case.by_operator:
        with pytest.raises(SpecError):
            parse(case.obj)
    else:
        parse(case.obj)


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
    messages: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            messages.update(r["message"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crd)
    tripped = {m for r in INVALID if r.by_crd for e in check(crd, r.obj) for m in messages if m in e}
    assert messages and tripped == messages


def test_a_cel_rule_sees_defaults(crd: dict[str, Any]) -> None:
    """tls Wrapper with no port: the port defaults to 587, so the rule must refuse it."""
    obj = changed(spec__relay={"host": "smtp.example.net", "tls": "Wrapper"})
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
    obj = changed(
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


def _recorded_mappings(parse_fn: Any, objs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Every object path the operator's parser walked, with the fields it knows there ([i] → [])."""
    from mailrelay.api import pod
    from mailrelay.api.checker import Checker

    seen: dict[str, set[str]] = {}
    mapping, conform = Checker.mapping, pod.conform

    def record(path: str, known: set[str]) -> None:
        """A field is known where every check of that object knows it (ClusterSmarthost's dkim narrows
        parse_dkim's fields first)."""
        path = re.sub(r"\[[0-9]+\]", "[]", path)
        seen[path] = seen[path] & known if path in seen else set(known)

    def recording(self: Checker, path: str, value: Any, known: set[str]) -> dict[str, Any] | None:
        record(path, known)
        return mapping(self, path, value, known)

    def conforming(check: Any, path: str, schema: dict[str, Any], value: Any) -> bool:
        """The fields a structural check (api/pod.py, e.g. imagePullSecrets) knows are its schema's."""
        if "properties" in schema:
            record(path, set(schema["properties"]))
        return conform(check, path, schema, value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checker, "mapping", recording)
        patch.setattr(pod, "conform", conforming)
        for obj in objs:
            parse_fn(obj)
    return seen


def _object_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every object with declared properties, as the parser names paths."""
    if node.get("type") == "array":
        yield from _object_nodes(node["items"], f"{path}[]")
        return
    if "properties" not in node:
        return
    yield path, node
    for key, sub in node["properties"].items():
        yield from _object_nodes(sub, f"{path}.{key}")


# Objects whose fields are checked against the upstream shape (api/pod_schema.json), not a field list.
_UPSTREAM = ("spec.affinity", "spec.topologySpreadConstraints[]")


@pytest.mark.parametrize("which", ["MailRelay", "ClusterSmarthost"])
def test_the_parser_knows_exactly_the_fields_the_crd_declares(which: str) -> None:
    """The field names are the one thing both keep by hand (hack/crd declares the CRD, api/ parses): every
    object the CRD declares is walked by the parser with the same field list, so a field added to one
    and not the other fails here. The samples set every optional object, or a path is reported unwalked."""
    from mailrelay.api import smarthost

    if which == "MailRelay":
        schema = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        walked = _recorded_mappings(parse, [*GOOD, *example_relays()])
    else:
        schema = yaml.safe_load(SMARTHOST_CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        docs = [d for d in yaml.safe_load_all((ROOT / "examples/cluster-smarthost.yaml").read_text()) if d]
        [example] = [d for d in docs if d.get("kind") == which]
        oauth2 = copy.deepcopy(example)  # the example's login is a password: the OAuth2 one, and a matchExpressions
        del oauth2["spec"]["authSecretRef"]
        oauth2["spec"].update(
            authType="OAuth2",
            oauth2={
                "provider": "Microsoft365",
                "tenantID": "example.com",
                "scope": "https://outlook.office365.com/.default",
                "clientID": "c",
                "grant": "ClientCredentials",
                "secretRef": {"name": "entra"},
                "username": "apps@example.com",
            },
        )
        selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["mail"]}]}
        oauth2["spec"]["allowedNamespaces"][0]["namespaceSelector"] = selector
        walked = _recorded_mappings(smarthost.parse, [example, oauth2])
    declared = {
        path: set(node["properties"])
        for path, node in _object_nodes(schema["properties"]["spec"], "spec")
        if not path.startswith(_UPSTREAM)
    }
    assert {p: walked.get(p) for p in declared} == declared
