"""The journey's relay, shared by the node's test modules: examples/smarthost.yaml with DKIM, a sink pod as its
smarthost (STARTTLS, SASL), client pods in its namespace, in one spec.clients admits and in one it does not.
The fixture that sets it up is `journey` (tests/node/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from support.nodekit import eventually, exec_in, sink_messages

if TYPE_CHECKING:
    from node import NodeCluster

ROOT = Path(__file__).resolve().parents[2]
LOGIN = ("relay@apps.test", "s3cret-login")
ADMITTED = {"mailrelay.dev/test-client": "admitted"}


@dataclass
class Journey:
    namespace: str  # the relay's, the sink's and the first client's
    relay: dict[str, Any]
    admitted: str  # a namespace spec.clients admits
    other: str  # a namespace it does not

    @property
    def fqdn(self) -> str:
        return str(self.relay["spec"]["mailFromFQDN"])


def smarthost_relay(namespace: str, admitted: dict[str, str]) -> list[dict[str, Any]]:
    """examples/smarthost.yaml in `namespace`: its smarthost the sink's Service, its login the sink's, DKIM
    signing (as examples/dkim.yaml, for mailFromFQDN), and the namespaces labelled `admitted` as clients."""
    documents = [d for d in yaml.safe_load_all((ROOT / "examples" / "smarthost.yaml").read_text()) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        if document["kind"] == "Secret":
            document["stringData"] = {"username": LOGIN[0], "password": LOGIN[1]}
        else:
            document["spec"]["relay"]["host"] = f"sink.{namespace}.svc.cluster.local"
            document["spec"]["dkim"] = {"selector": "node"}
            document["spec"]["clients"] = [{"namespaceSelector": {"matchLabels": admitted}}]
    return documents


def message(subject: str) -> str:
    """A message as an application writes it to sendmail: Unix line ends (busybox sendmail turns each LF into
    CRLF on the wire, so CRLF input would reach the smarthost with stray CRs, and DKIM would fail)."""
    return f"From: root@6ba2d5764050\nTo: you@example.org\nSubject: {subject}\n\nsent from a pod\n"


def sendmail(
    node: NodeCluster,
    namespace: str,
    subject: str,
    *,
    sender: str = "root@pod",
    host: str = "mail:25",
    timeout: int | None = None,
) -> Any:
    """busybox `sendmail -S host` in the namespace's client pod, message(subject) to you@example.org; not checked
    (a refused one is what some tests want). `timeout`: killed after so many seconds (busybox timeout)."""
    limit = ["busybox", "timeout", str(timeout)] if timeout else []
    command = [*limit, "sendmail", "-S", host, "-f", sender, "you@example.org"]
    return exec_in(node, namespace, "client", *command, input=message(subject), check=False)


def delivered(node: NodeCluster, journey: Journey, subject: str) -> dict[str, Any]:
    def find() -> list[dict[str, Any]]:
        return [
            m
            for m in sink_messages(node, journey.namespace)
            if dict((k.lower(), v) for k, v in m["headers"]).get("subject") == subject
        ]

    [found] = eventually(find, timeout=120, what=f"the mail {subject!r} at the sink")
    return found


def relay_pod(node: NodeCluster, journey: Journey) -> dict[str, Any]:
    [pod] = node.get("pods", "-n", journey.namespace, "-l", "app.kubernetes.io/instance=relay")["items"]
    return dict(pod)


def postfix_status(pod: dict[str, Any]) -> dict[str, Any]:
    [status] = [s for s in pod["status"]["containerStatuses"] if s["name"] == "postfix"]
    return dict(status)


def container_cgroup(node: NodeCluster, status: dict[str, Any], hierarchy: str) -> Path:
    """The container's cgroup in a v1 hierarchy, as the kubelet and runc made it under the node's cgroup."""
    assert node.node
    container_id = status["containerID"].split("://", 1)[1]
    [folder] = [p for p in Path("/sys/fs/cgroup", hierarchy, node.node.slot.cgroup).rglob(container_id) if p.is_dir()]
    return folder
