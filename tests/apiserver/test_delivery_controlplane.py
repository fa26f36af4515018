"""Delivery reporting through the real API server, with exactly the RBAC the manifests grant.

The operator runs with its ServiceAccount's token (from manifests/cluster-wide) against the real
control plane. Its relay is scaled to zero: kwok would give pods addresses outside this machine, and
the tests send traffic only to loopback; the pod listing, the Delivering condition it produces and
the pods/log permission are what this checks. The scrape itself is proven on real Postfix in
tests/mail/test_relay_metrics.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from controlplane import ControlPlane
from support.operator import OperatorProcess
from support.tools import objects, run
from support.wait import eventually

ACCOUNT = "system:serviceaccount:mailrelay-system:mailrelay-operator"


def relay_status(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        plane.request("GET", f"/apis/mailrelay.dev/v1alpha1/namespaces/{namespace}/mailrelays/relay").get("status")
        or {}
    )
    return status


def test_the_operator_reports_delivery_with_its_own_rbac(
    control_plane: ControlPlane, tools: Path, tmp_path: Path
) -> None:
    plane = control_plane
    docs = [
        d for d in objects(run(tools, "kubectl", "kustomize", "manifests/cluster-wide")) if d["kind"] != "Deployment"
    ]  # the operator runs here, not as a kwok pod
    (tmp_path / "install.yaml").write_text(yaml.safe_dump_all(docs))
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(tmp_path / "install.yaml"))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/mailrelays.mailrelay.dev")
    for verb, subresource in (("list", ""), ("get", "log")):  # kubectl exits 1 if not allowed
        plane.kubectl("auth", "can-i", verb, "pods", f"--subresource={subresource}", "-n", "default", f"--as={ACCOUNT}")
    for verb, subresource in (("get", ""), ("create", "exec"), ("get", "exec")):  # nothing more
        assert (
            plane.kubectl(
                "auth",
                "can-i",
                verb,
                "pods",
                f"--subresource={subresource}",
                "-n",
                "default",
                f"--as={ACCOUNT}",
                check=False,
            ).returncode
            != 0
        ), (verb, subresource)

    namespace = f"delivery-{os.getpid()}"
    plane.kubectl("create", "namespace", namespace)
    kubeconfig = plane.service_account_kubeconfig(
        "mailrelay-system", "mailrelay-operator", tmp_path / "operator.kubeconfig"
    )
    # The leader Lease in the operator's own namespace, where the manifests let it write one.
    operator = OperatorProcess.run(
        kubeconfig,
        tmp_path / "operator.log",
        MAILRELAY_RESYNC_SECONDS="1",
        POD_NAMESPACE="mailrelay-system",
        MAILRELAY_LEASE_NAME=namespace,
    ).start()
    try:
        relay = {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": "MailRelay",
            "metadata": {"name": "relay", "namespace": namespace},
            "spec": {"mailFromFQDN": "apps.example.com", "replicas": 0},
        }
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(relay))

        def delivering() -> dict[str, Any] | None:
            return next(
                (c for c in relay_status(plane, namespace).get("conditions", []) if c["type"] == "Delivering"), None
            )

        condition = eventually(delivering, timeout=60, what="the Delivering condition")
        assert (condition["status"], condition["reason"]) == ("Unknown", "NoRelayPods")
        status = relay_status(plane, namespace)
        assert status["queue"] == {"active": 0, "deferred": 0, "hold": 0, "incoming": 0, "oldestMessageAge": ""}
        version = plane.request("GET", f"/apis/mailrelay.dev/v1alpha1/namespaces/{namespace}/mailrelays/relay")[
            "metadata"
        ]["resourceVersion"]
        time.sleep(4)  # several resyncs, each asking for the relay's pods: nothing changed, nothing written
        assert (
            plane.request("GET", f"/apis/mailrelay.dev/v1alpha1/namespaces/{namespace}/mailrelays/relay")["metadata"][
                "resourceVersion"
            ]
            == version
        )
        assert "Forbidden" not in operator.log() and "not listed" not in operator.log()
    finally:
        operator.stop()
        plane.kubectl("delete", "namespace", namespace, "--wait=false")
