"""The operator image, built from image/operator/Dockerfile, run under runc as the shipped Deployment says."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from support.paths import ROOT
from support.podrunner import Pod, PodNetwork, wait_until
from support.podrunner.operator import OperatorPod
from support.shipped_operator import established

OPERATOR_NS = "mailrelay-system"


def shipped_deployment() -> dict[str, Any]:
    return next(
        d
        for d in yaml.safe_load_all((ROOT / "manifests/base/deployment.yaml").read_text())
        if d["kind"] == "Deployment"
    )


@pytest.fixture
def networks() -> Iterator[Callable[[], PodNetwork]]:
    made: list[PodNetwork] = []

    def make() -> PodNetwork:
        made.append(PodNetwork().create())
        return made[-1]

    yield make
    for network in made:
        network.delete()


def test_operator_image_runs_as_its_non_root_user_with_a_read_only_root(
    images: dict[str, str], networks: Callable[[], PodNetwork]
) -> None:
    """The shipped pod, with the container's args or command swapped as `kubectl debug` would."""
    runs: list[tuple[dict[str, Any], int, str]] = [
        ({"args": ["--help"]}, 0, "usage: mailrelay-operator"),
        ({}, 1, "no cluster to talk to"),  # unchanged, without a service account: a clear message
        (
            {"command": ["python3", "-c", "import os; print(os.getuid(), os.getgid()); open('/x', 'w')"]},
            1,
            "10001 10001",
        ),
    ]
    for override, status, text in runs:
        pod = Pod(shipped_deployment(), config_maps={}, network=networks())
        try:
            result = pod.run_once(**override)
        finally:
            pod.stop()
        assert result.returncode == status and text in result.stdout + result.stderr, result.stderr
        assert "Traceback" not in result.stderr or "Read-only file system" in result.stderr


def test_operator_pod_reconciles_against_the_real_api_server(
    images: dict[str, str], control_plane: Any, networks: Callable[[], PodNetwork]
) -> None:
    """The operator in its image, with the kubelet's service-account volume, turns a MailRelay into a
    Deployment on the API server; that Deployment and ConfigMap then run as a relay pod that gets ready."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests/cluster-wide"))
    established(control_plane, f"system:serviceaccount:{OPERATOR_NS}:mailrelay-operator", OPERATOR_NS)
    deployment = control_plane.request("GET", f"/apis/apps/v1/namespaces/{OPERATOR_NS}/deployments/mailrelay-operator")
    # The resync's delivery probe would scrape the kwok pods' made-up addresses, which are not this machine's.
    network = networks()
    shipped = OperatorPod(control_plane, deployment, network, MAILRELAY_DELIVERY_PROBE="false")
    container = shipped.container
    relay_pod: Pod | None = None
    try:
        operator = shipped.start()
        control_plane.kubectl("create", "namespace", "pod-apps")
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump(
                {
                    "apiVersion": "mailrelay.dev/v1alpha1",
                    "kind": "MailRelay",
                    "metadata": {"name": "relay", "namespace": "pod-apps"},
                    "spec": {"mailFromFQDN": "apps.example.com", "allowedNetworks": ["10.0.0.0/8"]},
                }
            ),
        )
        relay_deployment = wait_until(
            lambda: _get(control_plane, "/apis/apps/v1/namespaces/pod-apps/deployments/mailrelay-relay"),
            90,
            f"the operator's Deployment\n{operator.log()}",
        )
        wait_until(
            lambda: any(k == "livenessProbe" and s == 0 for k, s, _ in operator.probe_log),
            60,
            "the operator's liveness endpoint",
        )
        managers = {field["manager"] for field in relay_deployment["metadata"]["managedFields"]}
        assert "mailrelay-operator" in managers  # written by the operator in the pod, not by this test
        config_map = _get(control_plane, "/api/v1/namespaces/pod-apps/configmaps/mailrelay-relay")
        relay_pod = Pod(relay_deployment, config_maps={"mailrelay-relay": config_map["data"]}, network=networks())
        relay_pod.start().wait_ready(timeout=120)
        assert "Traceback" not in operator.log()
        # The operator's own metrics, on the port its Deployment names, from the pod's address.
        [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
        with urllib.request.urlopen(f"http://{network.pod_ip}:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert re.search(r"^mailrelay_operator_leader 1\.0$", text, re.M), text
        passes = re.findall(r'^mailrelay_operator_reconcile_passes_total\{trigger="(\w+)"\} ([0-9.]+)$', text, re.M)
        assert passes and {trigger for trigger, _ in passes} <= {"create", "resume", "update", "child", "resync"}
        assert sum(float(count) for _, count in passes) >= 1, text
    finally:
        if relay_pod is not None:
            relay_pod.stop()
        shipped.stop()


def _get(control_plane: Any, path: str) -> Any:
    try:
        return control_plane.request("GET", path)
    except urllib.error.HTTPError as error:  # 404 until the operator has written it
        if error.code != 404:
            raise
        return None
