"""The operator as manifests/<variant> ships it, run as a local process against the real control plane.

`kubectl kustomize` renders the variant; the admin applies every object (CRD, Namespace, ServiceAccount,
RBAC, Deployment); the ServiceAccount gets a TokenRequest token; and the process gets the Deployment
container's args and env, with `$(VAR)` expanded as the kubelet does. Only the liveness port moves to a
free one, since the process shares this machine's network. Nothing here retypes a flag or a rule.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailrelay.api.names import LEASE_NAME

from controlplane import ControlPlane
from support import operator
from support.operator import OperatorProcess, container_env
from support.paths import ROOT
from support.wait import eventually

RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
# Settings the tests shorten; the operator reads them from its environment.
# No delivery probe: kwok gives relay pods addresses off this machine, and tests send traffic to
# loopback only (tests/apiserver/test_delivery_controlplane.py checks the probe with a relay scaled to zero).
TEST_SETTINGS = {**operator.TEST_SETTINGS, "MAILRELAY_DELIVERY_PROBE": "false"}
POD_NAME = "mailrelay-operator-test"
FORBIDDEN = re.compile(r"\b403\b|Forbidden|forbidden")


@dataclass
class Shipped:
    """The rendered objects of one variant of manifests/."""

    variant: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def one(self, kind: str) -> dict[str, Any]:
        [obj] = [o for o in self.objects if o["kind"] == kind]
        return obj

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        [container] = self.deployment["spec"]["template"]["spec"]["containers"]
        return dict(container)

    @property
    def service_account(self) -> tuple[str, str]:
        account = self.one("ServiceAccount")["metadata"]
        return account["namespace"], account["name"]

    def rules(self) -> list[tuple[str | None, dict[str, Any]]]:
        """(namespace or None for cluster-wide, rule) for every rule bound to the operator's ServiceAccount."""
        namespace, name = self.service_account
        roles = {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
            for o in self.objects
            if o["kind"] in ("Role", "ClusterRole")
        }
        granted: list[tuple[str | None, dict[str, Any]]] = []
        for binding in (o for o in self.objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
            if {"kind": "ServiceAccount", "name": name, "namespace": namespace} not in binding["subjects"]:
                continue
            scope = binding["metadata"].get("namespace")
            ref = binding["roleRef"]
            role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
            granted += [(scope, rule) for rule in role["rules"]]
        return granted


def render(plane: ControlPlane, variant: str) -> Shipped:
    output = plane.kubectl("kustomize", str(ROOT / "manifests" / variant)).stdout
    return Shipped(variant, [o for o in yaml.safe_load_all(output) if o])


def install(plane: ControlPlane, variant: str) -> Shipped:
    """Apply every rendered object as the admin would, and wait for the CRD to be served."""
    shipped = render(plane, variant)
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(shipped.objects))
    if any(o["kind"] == "CustomResourceDefinition" for o in shipped.objects):
        [account] = [o["metadata"] for o in shipped.objects if o["kind"] == "ServiceAccount"]
        established(plane, f"system:serviceaccount:{account['namespace']}:{account['name']}", account["namespace"])
    return shipped


def established(
    plane: ControlPlane, user: str | None = None, namespace: str = "default", timeout: float = 90.0
) -> None:
    """Wait until the MailRelay CRD is Established and the apiserver's admission maps its kind.

    `kubectl wait` fails at once while a new CRD has no status yet, and OwnerReferencesPermission-
    Enforcement refuses (403) a non-admin's owner reference to a kind its REST mapping does not know
    yet. A server-side dry run, as the operator's user, of an object with such a reference tells when
    both are ready (an admin is exempt from that check, so the probe impersonates the operator).
    """
    probe = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "mailrelay-crd-probe",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "mailrelay.dev/v1alpha1",
                    "kind": "MailRelay",
                    "name": "probe",
                    "uid": "00000000-0000-0000-0000-000000000000",
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }
    deadline = time.monotonic() + timeout
    while True:
        waited = plane.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=10s",
            "customresourcedefinition/mailrelays.mailrelay.dev",
            check=False,
        )
        unmapped = False
        if user is not None:
            dry = plane.kubectl(
                f"--as={user}", "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe), check=False
            )
            unmapped = "RESTMapping" in dry.stderr or "no matches for kind" in dry.stderr
        if waited.returncode == 0 and not unmapped:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the MailRelay CRD is not served: {waited.stderr.strip()}")
        time.sleep(0.5)


def operator_client(plane: ControlPlane, folder: Path, *namespaces: str) -> Any:
    """The operator's own Api, with a token of the ServiceAccount and only the grants that
    manifests/cluster-wide ships (its Namespace, ServiceAccount, ClusterRole and binding applied as an
    admin would), for tests that drive one reconcile pass or one call without the operator process."""
    from mailrelay.controller.client import OperatorApi

    plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "mailrelay.dev_mailrelays.yaml"))
    wanted = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    rbac = [o for o in render(plane, "cluster-wide").objects if o["kind"] in wanted]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    [account] = [o["metadata"] for o in rbac if o["kind"] == "ServiceAccount"]
    established(plane, f"system:serviceaccount:{account['namespace']}:{account['name']}", account["namespace"])
    for namespace in namespaces:
        plane.kubectl("create", "namespace", namespace, check=False)
    kubeconfig = plane.service_account_kubeconfig(account["namespace"], account["name"], folder / "kubeconfig")
    return OperatorApi.from_kubeconfig(kubeconfig)


def uninstall_rbac(plane: ControlPlane, shipped: Shipped) -> None:
    """Remove the variant's grants, so the next variant runs with its own rules only."""
    for obj in shipped.objects:
        if obj["kind"] in RBAC_KINDS:
            namespace = obj["metadata"].get("namespace")
            plane.kubectl(
                "delete",
                obj["kind"].lower() + ".rbac.authorization.k8s.io",
                obj["metadata"]["name"],
                *(["-n", namespace] if namespace else []),
                "--ignore-not-found",
                "--wait=true",
            )


def lease(shipped: Shipped) -> tuple[str, str]:
    """The leader-election Lease the Deployment's pods use: (namespace, name), from its env."""
    env = container_env(shipped.deployment, POD_NAME)
    return env["POD_NAMESPACE"], env.get("MAILRELAY_LEASE_NAME") or LEASE_NAME


def forget_lease(plane: ControlPlane, shipped: Shipped) -> None:
    """Delete the variant's Lease, as on a fresh install: variants (and test_ha's replicas) share its
    name, and a Lease left by an earlier operator would hide this one's `create` (or, still held by a
    killed replica, delay its start by a lease duration)."""
    namespace, name = lease(shipped)
    plane.kubectl("delete", "leases.coordination.k8s.io", name, "-n", namespace, "--ignore-not-found")


def start_operator(plane: ControlPlane, shipped: Shipped, folder: Path) -> tuple[OperatorProcess, int]:
    """Start `mailrelay-operator` with the ServiceAccount's token and the Deployment's args and env."""
    folder.mkdir(parents=True, exist_ok=True)
    namespace, name = shipped.service_account
    kubeconfig = plane.service_account_kubeconfig(namespace, name, folder / "kubeconfig")
    operator = OperatorProcess.deployed(
        shipped.deployment, kubeconfig, folder / "operator.log", POD_NAME, **TEST_SETTINGS
    )
    operator.start()
    port = operator.ports["liveness"]
    probe = shipped.container["livenessProbe"]["httpGet"]["path"]
    eventually(lambda: _answers(f"http://127.0.0.1:{port}{probe}"), timeout=60, what="the operator's liveness probe")
    return operator, port


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return bool(answer.status == 200)


# 403s that no Role can change: NamespaceLifecycle's for a namespace being deleted (an Event about a relay
# in a namespace another test is removing), and OwnerReferencesPermissionEnforcement's while the
# apiserver's own REST mapping does not know a CRD installed a moment ago (the operator retries).
NOT_RBAC = ("because it is being terminated", 'no matches for kind "MailRelay"')


def forbidden_lines(log: str) -> list[str]:
    """Refusals in the operator's log that a missing RBAC rule would explain."""
    return [line for line in log.splitlines() if FORBIDDEN.search(line) and not any(text in line for text in NOT_RBAC)]
