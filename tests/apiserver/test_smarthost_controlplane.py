"""A ClusterSmarthost reconciled on the real control plane, as the operator's ServiceAccount under the
RBAC manifests/cluster-wide ships: the egress tier in the operator's namespace, a tenant admitted, a
namespace outside the selector refused with its condition, and no trace of the platform login in any
object of either tenant namespace (read back from the apiserver by the admin).

The passes are the operator's own Context (work queue, gather → decide → execute) reading straight
from the API instead of its informers; no pod runs (no kubelet), so nothing becomes Available.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailrelay.api import conditions as cond
from mailrelay.api.names import KIND, SMARTHOST_KIND
from mailrelay.controller import smarthosts
from mailrelay.controller.client import OperatorApi
from mailrelay.controller.context import Context
from mailrelay.controller.observe import Platform
from mailrelay.controller.settings import Settings
from mailrelay.controller.status import ready_condition
from mailrelay.kube.leader import Leadership

from controlplane import ControlPlane
from support.one_pass import UncachedStore, settle
from support.paths import ROOT
from support.shipped_operator import established, render

ALLOWED, OUTSIDE = "csh-allowed", "csh-outside"
PASSWORD = "platform-secret-Vb93kq"
SMARTHOST = "cp-company"
EGRESS = f"mailrelay-smarthost-{SMARTHOST}"
GROUP_PATH = "/apis/mailrelay.dev/v1alpha1"


class ListingStore(UncachedStore):
    """The operator reads relays and ClusterSmarthosts from its informers (list and watch, never get):
    here from a list by name. Secrets and the rest are read one at a time, as the operator does."""

    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind not in (KIND, SMARTHOST_KIND, "Namespace"):
            return super().cached(kind, namespace, name)
        items = self.api.list_all(kind, namespace or None, {})[0]
        found = [{**item, "kind": kind} for item in items if item["metadata"]["name"] == name]
        return found[0] if found else None

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.api.get(kind, namespace, name)
        return found


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, str]]:
    plane = control_plane
    for path in sorted((ROOT / "crds").glob("mailrelay.dev_*.yaml")):
        plane.kubectl("apply", "--server-side", "-f", str(path))
    shipped = render(plane, "cluster-wide")
    kinds = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([o for o in shipped.objects if o["kind"] in kinds]))
    operator_ns, account = shipped.service_account
    established(plane, f"system:serviceaccount:{operator_ns}:{account}", operator_ns)
    for ns, labels in ((ALLOWED, {"mail.example.com/smarthost": SMARTHOST}), (OUTSIDE, {})):
        plane.kubectl("create", "namespace", ns)
        if labels:
            plane.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in labels.items()))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{SMARTHOST}-login", "namespace": operator_ns},
        "stringData": {"username": "relay@example.com", "password": PASSWORD},
    }
    smarthost = {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": SMARTHOST_KIND,
        "metadata": {"name": SMARTHOST},
        "spec": {
            "host": "smtp.example.net",
            "authSecretRef": {"name": f"{SMARTHOST}-login"},
            "allowedNamespaces": [
                {
                    "namespaceSelector": {"matchLabels": {"mail.example.com/smarthost": SMARTHOST}},
                    "senderDomains": ["{namespace}.apps.example.com"],
                }
            ],
        },
    }
    relays = [
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": KIND,
            "metadata": {"name": "mail", "namespace": ns},
            "spec": {"mailFromFQDN": f"{ns}.apps.example.com", "smarthostRef": {"name": SMARTHOST}},
        }
        for ns in (ALLOWED, OUTSIDE)
    ]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([secret, smarthost, *relays]))
    kubeconfig = plane.service_account_kubeconfig(
        operator_ns, account, tmp_path_factory.mktemp("operator") / "kubeconfig"
    )
    context = Context(
        store=ListingStore(OperatorApi.from_kubeconfig(kubeconfig)),
        settings=Settings(postfix_image="registry.local/postfix:9"),
        leadership=Leadership.unconditional("test-replica"),
        clock=lambda: "2026-01-01T00:00:00Z",
        platform=Platform(operator_ns, served=True),
    )
    yield context, operator_ns
    plane.kubectl("delete", "namespace", ALLOWED, OUTSIDE, "--wait=false")
    plane.kubectl("delete", "clustersmarthost", SMARTHOST, "--wait=false")


def _names(plane: ControlPlane, kind: str, ns: str) -> set[str]:
    listing = plane.kubectl("get", kind, "-n", ns, "-o", "json").stdout
    return {item["metadata"]["name"] for item in json.loads(listing)["items"]}


def test_the_egress_tier_and_its_tenants_on_the_real_apiserver(
    control_plane: ControlPlane, setup: tuple[Context, str]
) -> None:
    plane, (context, operator_ns) = control_plane, setup
    settle(context, smarthosts.key(SMARTHOST), (ALLOWED, "mail"), (OUTSIDE, "mail"))
    for kind in ("deployments", "services", "configmaps", "networkpolicies", "poddisruptionbudgets"):
        assert EGRESS in _names(plane, kind, operator_ns), kind
    shown = plane.request("GET", f"{GROUP_PATH}/clustersmarthosts/{SMARTHOST}")["status"]
    assert shown["tenants"] == [
        {"namespace": ALLOWED, "relays": ["mail"], "senderDomains": [f"{ALLOWED}.apps.example.com"]}
    ]
    assert {"relay": f"{OUTSIDE}/mail", "reason": cond.SMARTHOST_NOT_ALLOWED} in shown["denied"]
    assert shown["fingerprint"] and ready_condition(shown) is not None
    # The admitted tenant: its relay, pointed at the egress tier, and a login Secret of its own.
    assert "mailrelay-mail" in _names(plane, "deployments", ALLOWED)
    assert "mailrelay-mail-smarthost-login" in _names(plane, "secrets", ALLOWED)
    main_cf = plane.request("GET", f"/api/v1/namespaces/{ALLOWED}/configmaps/mailrelay-mail")["data"]["main.cf"]
    assert f"relayhost = [{EGRESS}.{operator_ns}.svc]:25" in main_cf
    # The namespace outside the selector: the condition, and no child at all.
    outside = plane.request("GET", f"{GROUP_PATH}/namespaces/{OUTSIDE}/mailrelays/mail")["status"]
    assert (ready_condition(outside) or {}).get("reason") == cond.SMARTHOST_NOT_ALLOWED
    for kind in ("deployments", "configmaps", "services", "networkpolicies", "secrets"):
        assert not [n for n in _names(plane, kind, OUTSIDE) if n.startswith("mailrelay-")], kind


def test_no_trace_of_the_platform_login_in_either_tenant_namespace(
    control_plane: ControlPlane, setup: tuple[Context, str]
) -> None:
    plane, (context, _) = control_plane, setup
    settle(context, smarthosts.key(SMARTHOST), (ALLOWED, "mail"), (OUTSIDE, "mail"))
    forms = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode()]
    kinds = "secrets,configmaps,deployments,replicasets,services,networkpolicies,poddisruptionbudgets,mailrelays,events"
    for ns in (ALLOWED, OUTSIDE):
        text = plane.kubectl("get", kinds, "-n", ns, "-o", "json").stdout
        assert json.loads(text)["items"], ns  # the scan saw the namespace's objects
        assert not [f for f in forms if f in text], ns
    smarthost = json.dumps(plane.request("GET", f"{GROUP_PATH}/clustersmarthosts/{SMARTHOST}"))
    assert not [f for f in forms if f in smarthost]


def test_a_tenant_cannot_read_the_platform_login(control_plane: ControlPlane, setup: tuple[Context, str]) -> None:
    """A tenant who may do anything in its own namespace (every verb on every resource, bound there)."""
    plane, (_, operator_ns) = control_plane, setup
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "tenant-all", "namespace": ALLOWED},
        "rules": [everything],
    }
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    plane.kubectl("create", "rolebinding", "tenant-all", "-n", ALLOWED, "--role=tenant-all", "--user=tenant")

    def can(*args: str) -> bool:
        return plane.kubectl("auth", "can-i", *args, "--as=tenant", check=False).stdout.strip() == "yes"

    assert can("get", "secrets", "-n", ALLOWED)  # its own relay login: readable, as designed
    assert not can("get", "secrets", "-n", operator_ns) and not can(
        "get", f"secrets/{SMARTHOST}-login", "-n", operator_ns
    )
    assert not can("patch", "clustersmarthosts.mailrelay.dev") and not can("create", "clustersmarthosts.mailrelay.dev")
