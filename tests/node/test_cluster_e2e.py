"""Opt-in end-to-end run on a real cluster (kind, k3d, ...): a real mail through `mail:25`.

    MAILRELAY_E2E_KUBECONFIG=~/.kube/config make test   # or: pytest -m cluster

Needs the Postfix image where the cluster can pull it (for kind: build image/postfix, then
`kind load docker-image`; set MAILRELAY_E2E_POSTFIX_IMAGE to its name), and pulls busybox and
axllent/mailpit (the sink). The operator runs here as a process against the cluster; the test
namespace is deleted at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.operator import OperatorProcess
from support.paths import CRD_PATH
from support.podrunner import wait_until

KUBECONFIG = os.environ.get("MAILRELAY_E2E_KUBECONFIG", "")
POSTFIX_IMAGE = os.environ.get("MAILRELAY_E2E_POSTFIX_IMAGE", "")
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not KUBECONFIG, reason="set MAILRELAY_E2E_KUBECONFIG to run against a cluster"),
]


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def apply(*objects: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))


def wait(check: Any, timeout: float = 300, what: str = "condition") -> Any:
    return wait_until(check, timeout, what)


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"mailrelay-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", str(CRD_PATH))
    kubectl("wait", "--for=condition=Established", "crd/mailrelays.mailrelay.dev", "--timeout=60s")
    kubectl("create", "namespace", name)
    log = tmp_path_factory.mktemp("e2e") / "operator.log"
    # A real cluster: the operator's own resync and retry settings, not the tests' shortened ones.
    env = {"MAILRELAY_RESYNC_SECONDS": "60", "MAILRELAY_RETRY_SECONDS": "1"}
    if POSTFIX_IMAGE:
        env["MAILRELAY_POSTFIX_IMAGE"] = POSTFIX_IMAGE
    operator = OperatorProcess.run(Path(KUBECONFIG), log, "--namespace", name, "--liveness-port", "0", **env).start()
    try:
        yield name
    finally:
        operator.stop()
        print(operator.log()[-5000:])
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_a_pod_sends_through_mail_and_the_sender_is_rewritten(namespace: str) -> None:
    labels = {"app": "sink"}
    apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sink", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "mailpit",
                                "image": "axllent/mailpit:v1.21",
                                "ports": [{"containerPort": 1025}, {"containerPort": 8025}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "sink", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"name": "smtp", "port": 1025}, {"name": "http", "port": 8025}]},
        },
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": "MailRelay",
            "metadata": {"name": "relay", "namespace": namespace},
            "spec": {
                "mailFromFQDN": "e2e.example.com",
                "relay": {"host": f"sink.{namespace}.svc.cluster.local", "port": 1025, "tls": "None"},
            },
        },
    )
    kubectl("-n", namespace, "rollout", "status", "deploy/sink", "--timeout=300s")
    wait(
        lambda: (
            json.loads(kubectl("-n", namespace, "get", "mailrelay", "relay", "-o", "json"))
            .get("status", {})
            .get("conditions", [{}])[0]
            .get("status")
            == "True"
        ),
        what="the relay to be Ready",
    )
    kubectl(
        "-n",
        namespace,
        "run",
        "client",
        "--image=busybox:1.36",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "printf 'Subject: e2e\\n\\nhello through mail:25\\n' | "
        "sendmail -S mail:25 -f root@6ba2d5764050 ops@example.org",
    )

    def received() -> list[dict[str, Any]]:
        raw = kubectl(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/services/sink:8025/proxy/api/v1/messages", check=False
        )
        return json.loads(raw).get("messages", []) if raw.strip().startswith("{") else []

    [message] = wait(received, what="the mail at the sink")
    assert message["From"]["Address"] == "root@e2e.example.com"
    assert message["Subject"] == "e2e"


def test_a_deleted_child_comes_back(namespace: str) -> None:
    uid = kubectl("-n", namespace, "get", "configmap", "mailrelay-relay", "-o", "jsonpath={.metadata.uid}")
    kubectl("-n", namespace, "delete", "configmap", "mailrelay-relay")
    wait(
        lambda: (
            kubectl(
                "-n", namespace, "get", "configmap", "mailrelay-relay", "-o", "jsonpath={.metadata.uid}", check=False
            )
            not in ("", uid)
        ),
        what="the ConfigMap back",
    )
