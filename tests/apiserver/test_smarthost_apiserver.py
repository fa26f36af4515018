"""The shipped ClusterSmarthost CRD and its RBAC on the real kube-apiserver.

The CRD (generated from the MailRelay CRD by `make generate`) is served cluster-scoped, keeps what the
example writes, and refuses what the operator's parser refuses; a MailRelay keeps spec.smarthostRef
(a pruned reference would turn a tenant relay into a direct-to-MX relay) and cannot have both it and
spec.relay. The cluster-wide variant's RBAC lets the operator read Secrets of its own namespace for
the platform login, list ClusterSmarthosts and Namespaces, and list Secrets nowhere.
"""

from __future__ import annotations

import copy
import json
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailrelay.api import smarthost
from mailrelay.api.spec import SpecError, parse

from controlplane import ControlPlane
from support.paths import ROOT, SMARTHOST_CRD_PATH
from support.shipped_operator import established, render

TENANT = "smarthost-tenant"  # not the example's namespace: test_api_validation applies the example
SMARTHOSTS = "/apis/mailrelay.dev/v1alpha1/clustersmarthosts?fieldValidation=Strict"
RELAYS = f"/apis/mailrelay.dev/v1alpha1/namespaces/{TENANT}/mailrelays?fieldValidation=Strict"
EXAMPLE = [d for d in yaml.safe_load_all((ROOT / "examples" / "cluster-smarthost.yaml").read_text()) if d]
[SMARTHOST] = [d for d in EXAMPLE if d["kind"] == "ClusterSmarthost"]
[TENANT_RELAY] = [d for d in EXAMPLE if d["kind"] == "MailRelay"]


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    for path in sorted((ROOT / "crds").glob("mailrelay.dev_*.yaml")):
        control_plane.kubectl("apply", "--server-side", "-f", str(path))
    established(control_plane)
    control_plane.kubectl("create", "namespace", TENANT, check=False)
    yield control_plane
    control_plane.kubectl("delete", "namespace", TENANT, "--wait=false")


def _post(plane: ControlPlane, path: str, obj: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    try:
        return 201, "", dict(plane.request("POST", path, obj))
    except urllib.error.HTTPError as error:
        return error.code, str(json.loads(error.read()).get("message", "")), {}


def _named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"] = {**out["metadata"], "name": name}
    if "namespace" in out["metadata"]:
        out["metadata"]["namespace"] = TENANT
    return out


def test_the_crd_is_cluster_scoped_and_established(plane: ControlPlane) -> None:
    crd = yaml.safe_load(SMARTHOST_CRD_PATH.read_text())
    served = plane.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
    conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions.get("NonStructuralSchema", "False") == "False"
    assert served["spec"]["scope"] == "Cluster" and served["status"]["acceptedNames"]["kind"] == "ClusterSmarthost"


def test_the_example_is_stored_as_written_and_parses(plane: ControlPlane) -> None:
    code, message, stored = _post(plane, SMARTHOSTS, _named(SMARTHOST, "example-stored"))
    assert code == 201, message
    assert stored["spec"]["allowedNamespaces"] == SMARTHOST["spec"]["allowedNamespaces"]
    parsed = smarthost.parse(stored)
    assert parsed.spec.relay.auth_secret == "company-smarthost-login" and len(parsed.spec.grants) == 2
    code, message, relay = _post(plane, RELAYS, _named(TENANT_RELAY, "stored-ref"))
    assert code == 201, message
    assert relay["spec"]["smarthostRef"] == {"name": "company", "kind": "ClusterSmarthost"}  # not pruned
    assert parse(relay).spec.smarthost == "company"
    plane.request("DELETE", "/apis/mailrelay.dev/v1alpha1/clustersmarthosts/example-stored")


def _spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SMARTHOST["spec"])
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


REFUSED = {
    "wrapper-needs-465": _spec(tls="Wrapper"),
    "no-allowed-namespaces": _spec(allowedNamespaces=None),
    "no-host": _spec(host=None),
    "placeholder-not-a-label": _spec(
        allowedNamespaces=[{"namespaceSelector": {}, "senderDomains": ["{namespace}x.apps.example.com"]}]
    ),
    "no-sender-domains": _spec(allowedNamespaces=[{"namespaceSelector": {}}]),
    "oauth2-without-settings": _spec(authType="OAuth2", authSecretRef=None),
    "zero-egress-replicas": _spec(egress={"replicas": 0}),
    "negative-rate": _spec(
        allowedNamespaces=[
            {"namespaceSelector": {}, "senderDomains": ["a.example.com"], "limits": {"messagesPerMinute": -1}}
        ]
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_smarthost_is_refused_by_the_apiserver_and_the_operator(plane: ControlPlane, case: str) -> None:
    obj = {**_named(SMARTHOST, f"bad-{case}"), "spec": REFUSED[case]}
    with pytest.raises(SpecError):
        smarthost.parse(obj)
    code, message, _ = _post(plane, SMARTHOSTS, obj)
    assert code == 422, (code, message)


def test_a_long_name_is_refused_by_both(plane: ControlPlane) -> None:
    obj = _named(SMARTHOST, "s" * 41)  # its egress tier is named mailrelay-smarthost-<name>
    with pytest.raises(SpecError, match=r"metadata\.name"):
        smarthost.parse(obj)
    code, message, _ = _post(plane, SMARTHOSTS, obj)
    assert code == 422 and "metadata.name" in message, message


def test_a_relay_cannot_have_both_smarthost_ref_and_relay(plane: ControlPlane) -> None:
    obj = _named(TENANT_RELAY, "both")
    obj["spec"] = {**obj["spec"], "relay": {"host": "smtp.example.net"}}
    with pytest.raises(SpecError, match="smarthostRef"):
        parse(obj)
    code, message, _ = _post(plane, RELAYS, obj)
    assert code == 422 and "smarthostRef" in message, message


def test_cluster_wide_rbac_reads_platform_secrets_only_in_the_operator_namespace(plane: ControlPlane) -> None:
    shipped = render(plane, "cluster-wide")
    kinds = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([o for o in shipped.objects if o["kind"] in kinds]))
    namespace, name = shipped.service_account
    user = f"system:serviceaccount:{namespace}:{name}"

    def can(*args: str) -> bool:
        done = plane.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
        return done.stdout.strip() == "yes"

    assert can("get", "secrets", "-n", namespace) and can("create", "secrets", "-n", namespace)
    assert can("list", "clustersmarthosts.mailrelay.dev") and can("watch", "clustersmarthosts.mailrelay.dev")
    assert can("patch", "clustersmarthosts.mailrelay.dev", "--subresource=status")
    assert can("list", "namespaces")
    # Never a list of Secrets, in its own namespace or any other: one Secret at a time, by name.
    assert not can("list", "secrets", "-n", namespace) and not can("list", "secrets", "-A")
    assert not can("update", "clustersmarthosts.mailrelay.dev") and not can("delete", "clustersmarthosts.mailrelay.dev")
