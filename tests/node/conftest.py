"""The `node` fixture: the real control plane with one real node (tools/node), once per session.

Pods come from the images `make images` built (the node pulls them from the local registry) and from the
project's shipped manifests; tests create them with kubectl as a person would (`kubectl run`, `create
deployment`, `expose`, `apply -k`), never with pod specs of their own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from support.clusters import started
from support.journey import ADMITTED, LOGIN, Journey, smarthost_relay
from support.nodekit import exec_in, ready

if TYPE_CHECKING:
    from node import NodeCluster

ROOT = Path(__file__).resolve().parents[2]


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "the node needs root (network namespaces, containerd, cgroups)"
    missing = [
        tool for tool in ("containerd", "runc", "iptables", "ipset", "podman", "nsenter") if not shutil.which(tool)
    ]
    if missing or not Path("/usr/lib/cni/bridge").exists():
        return f"the node needs Debian's containerd, runc, CNI plugins, iptables, ipset: missing {missing or 'cni'}"
    return None


@pytest.fixture(scope="session")
def node(tools: Path) -> Iterator[NodeCluster]:
    """A control plane and a real node; images built and pushed first. Fails (never skips) in CI."""
    problem = _problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    from node import NodeCluster

    with started(NodeCluster, "mailrelay-node-", "node") as cluster:
        print(f"node: cluster ready in {cluster.startup_seconds:.0f} s ({cluster.folder})")
        yield cluster


@pytest.fixture(scope="session")
def test_images() -> dict[str, str]:
    """Short name -> the name the node pulls (registry.mailrelay.test/testing/<name>:dev)."""
    from node.images import build_module

    return {name: image.tag for name, image in build_module().testing_images().items()}


@pytest.fixture
def namespace(node: NodeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def run_pod(node: NodeCluster, test_images: dict[str, str]) -> Callable[..., str]:
    """`kubectl run NAME --image=<test image>` in a namespace, waited for until Ready; returns the name."""

    def run(namespace: str, name: str, image: str, *args: str, wait: bool = True) -> str:
        node.kubectl("run", name, "-n", namespace, f"--image={test_images[image]}", *args)
        if wait:
            ready(node, namespace, f"pod/{name}")
        return name

    return run


@pytest.fixture
def mail_service_ip(node: NodeCluster, namespace: str, run_pod: Callable[..., str]) -> str:
    """In `namespace`: a sink pod behind a Service `mail` on port 25, and a client pod; returns the ClusterIP."""
    run_pod(namespace, "sink", "sink")
    node.kubectl("expose", "pod", "sink", "-n", namespace, "--name=mail", "--port=25")
    run_pod(namespace, "client", "client")
    return str(node.get("service", "mail", "-n", namespace)["spec"]["clusterIP"])


@pytest.fixture(scope="session")
def operator(node: NodeCluster) -> str:
    """The cluster-wide variant, rendered by kubectl and applied as is; returns the operator's namespace."""
    rendered = node.kubectl("kustomize", str(ROOT / "manifests" / "cluster-wide")).stdout
    node.kubectl("apply", "--server-side", "-f", "-", input=rendered)
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    namespace = deployment["metadata"]["namespace"]
    done = node.kubectl(
        "rollout",
        "status",
        "-n",
        namespace,
        f"deployment/{deployment['metadata']['name']}",
        "--timeout=300s",
        check=False,
    )
    if done.returncode:
        pods = node.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
        raise AssertionError(f"the operator did not roll out: {done.stderr}\n{pods}")
    return str(namespace)


@pytest.fixture(scope="session")
def journey(node: NodeCluster, operator: str, run_pod: Callable[..., str]) -> Iterator[Journey]:
    """The journey's relay Ready by its own probes, its DKIM record published to the sink, the client pods."""
    tag = uuid.uuid4().hex[:6]
    namespace, admitted, other = f"journey-{tag}", f"admitted-{tag}", f"other-{tag}"
    for name in (namespace, admitted, other):
        node.kubectl("create", "namespace", name)
    node.kubectl("label", "namespace", admitted, *(f"{k}={v}" for k, v in ADMITTED.items()))
    run_pod(namespace, "sink", "sink", f"--env=SINK_USER={LOGIN[0]}", f"--env=SINK_PASSWORD={LOGIN[1]}")
    node.kubectl("expose", "pod", "sink", "-n", namespace, "--name=sink", "--port=587")
    documents = smarthost_relay(namespace, ADMITTED)
    [relay] = [d for d in documents if d["kind"] == "MailRelay"]
    assert "image" not in relay["spec"]  # the operator's default: the release's Postfix image
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    done = node.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "mailrelay/relay", "--timeout=300s", check=False
    )
    if done.returncode:
        status = node.kubectl("get", "mailrelay", "relay", "-n", namespace, "-o", "yaml", check=False).stdout
        pods = node.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
        raise AssertionError(f"the relay is not Ready: {done.stderr}\n{status}\n{pods}")
    # The DKIM record the MailRelay reports, published where the sink looks keys up (it has no DNS).
    for record in node.get("mailrelay", "relay", "-n", namespace)["status"]["dkim"]["records"]:
        path = f"/etc/sink/dkim/{record['name']}"
        exec_in(node, namespace, "sink", "sh", "-c", f"mkdir -p /etc/sink/dkim && cat > {path}", input=record["value"])
    for name in (namespace, admitted, other):
        run_pod(name, "client", "client")
    yield Journey(namespace, relay, admitted, other)
    for name in (namespace, admitted, other):
        node.kubectl("delete", "namespace", name, "--wait=false", check=False)
