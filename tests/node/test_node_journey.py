"""The user's journey on the real node, from shipped artifacts only: the operator installed with
`kubectl apply` of `kubectl kustomize manifests/cluster-wide` (its image pulled by its release name from the
local registry), the example smarthost relay of examples/smarthost.yaml pointed at a sink pod that speaks
STARTTLS and SASL, a client pod sending with busybox `sendmail -S mail:25`, and the mail at the sink with
its envelope sender and From rewritten, sent over TLS with the relay's login."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from nodekit import eventually, exec_in, sink_messages

if TYPE_CHECKING:
    from node import NodeCluster

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]
LOGIN = ("relay@apps.test", "s3cret-login")


@pytest.fixture(scope="module")
def operator(node: NodeCluster) -> str:
    """The cluster-wide variant, rendered by kubectl and applied as is; returns the operator's namespace."""
    rendered = node.kubectl("kustomize", str(ROOT / "manifests" / "cluster-wide")).stdout
    node.kubectl("apply", "--server-side", "-f", "-", input=rendered)
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    namespace = deployment["metadata"]["namespace"]
    done = node.kubectl("rollout", "status", "-n", namespace, f"deployment/{deployment['metadata']['name']}",
                        "--timeout=300s", check=False)
    if done.returncode:
        pods = node.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
        raise AssertionError(f"the operator did not roll out: {done.stderr}\n{pods}")
    return str(namespace)


def smarthost_relay(namespace: str) -> list[dict[str, Any]]:
    """examples/smarthost.yaml in `namespace`, its smarthost the sink's Service and its login the sink's."""
    documents = [d for d in yaml.safe_load_all((ROOT / "examples" / "smarthost.yaml").read_text()) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        if document["kind"] == "Secret":
            document["stringData"] = {"username": LOGIN[0], "password": LOGIN[1]}
        else:
            document["spec"]["relay"]["host"] = f"sink.{namespace}.svc.cluster.local"
    return documents


def test_a_relay_without_an_image_runs_on_the_node_and_delivers_rewritten_mail(
        node: NodeCluster, operator: str, namespace: str, run_pod: Callable[..., str]) -> None:
    run_pod(namespace, "sink", "sink", f"--env=SINK_USER={LOGIN[0]}", f"--env=SINK_PASSWORD={LOGIN[1]}")
    node.kubectl("expose", "pod", "sink", "-n", namespace, "--name=sink", "--port=587")
    documents = smarthost_relay(namespace)
    [relay] = [d for d in documents if d["kind"] == "MailRelay"]
    assert "image" not in relay["spec"]  # the operator's default: the release's Postfix image
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    done = node.kubectl("wait", "-n", namespace, "--for=condition=Ready", "mailrelay/relay", "--timeout=300s",
                        check=False)
    if done.returncode:
        status = node.kubectl("get", "mailrelay", "relay", "-n", namespace, "-o", "yaml", check=False).stdout
        pods = node.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
        raise AssertionError(f"the relay is not Ready: {done.stderr}\n{status}\n{pods}")
    relay_pods = node.get("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=relay")["items"]
    pod_images = {c["image"] for p in relay_pods for c in p["spec"]["containers"]}
    assert pod_images == {"ghcr.io/mailrelay-dev/postfix:0.1.0"}

    run_pod(namespace, "client", "client")
    message = ("From: root@6ba2d5764050\r\nTo: you@example.org\r\nSubject: from the node\r\n\r\n"
               "sent with busybox sendmail through mail:25\r\n")
    sent = exec_in(node, namespace, "client", "sendmail", "-S", "mail:25", "-f", "root@6ba2d5764050",
                   "you@example.org", input=message, check=False)
    assert sent.returncode == 0, sent.stderr

    [delivered] = eventually(lambda: sink_messages(node, namespace), timeout=120, what="the mail at the sink")
    headers = {name.lower(): value for name, value in delivered["headers"]}
    fqdn = relay["spec"]["mailFromFQDN"]
    assert delivered["mail_from"] == f"root@{fqdn}"
    assert headers["from"] == f"root@{fqdn}"
    assert delivered["rcpt_tos"] == ["you@example.org"]
    assert delivered["tls"] is True and delivered["login"] == LOGIN[0] and delivered["port"] == 587
    relay_ips = {p["status"]["podIP"] for p in node.get("pods", "-n", namespace)["items"]
                 if p["metadata"]["name"].startswith("mailrelay-relay")}
    assert delivered["peer"] in relay_ips


def test_the_operator_pod_runs_its_released_image_pulled_from_the_registry(node: NodeCluster, operator: str) -> None:
    pods = node.get("pods", "-n", operator)["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {
        "ghcr.io/mailrelay-dev/mailrelay-operator:0.1.0"}
    assert node.node
    listed = node.node.crictl("images", "list", "-q").stdout
    assert "ghcr.io/mailrelay-dev/mailrelay-operator:0.1.0" in listed
