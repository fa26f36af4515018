"""The node does what a cluster's node does: registers Ready, runs pods from the registry, serves logs and
exec, resolves Service names through CoreDNS, reaches a Service's ClusterIP through kube-proxy, enforces a
NetworkPolicy (kube-router's firewall), and gives a container with a memory limit a real cgroup limit."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from support.nodekit import eventually, exec_in

if TYPE_CHECKING:
    from node import NodeCluster

pytestmark = pytest.mark.node


def smtp_banner(node: NodeCluster, namespace: str, client: str, host: str) -> str:
    """The first line a TCP connection to host:25 reads from inside the client pod (empty if refused)."""
    done = exec_in(
        node, namespace, client, "busybox", "timeout", "5", "busybox", "nc", host, "25", input="QUIT\r\n", check=False
    )
    return str(done.stdout)


def test_the_node_registers_ready_with_the_pinned_kubelet_and_containerd(node: NodeCluster) -> None:
    assert node.node
    [registered] = [n for n in node.get("nodes")["items"] if n["metadata"]["name"] == node.node.name]
    info = registered["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://1.6.")
    addresses = {a["type"]: a["address"] for a in registered["status"]["addresses"]}
    assert addresses["InternalIP"] == node.node.slot.node_ip


def test_a_pod_runs_and_kubectl_logs_and_exec_work(
    node: NodeCluster, namespace: str, run_pod: Callable[..., str]
) -> None:
    run_pod(namespace, "sink", "sink")
    assert eventually(
        lambda: "listening on 25 and 587" in node.kubectl("logs", "-n", namespace, "sink").stdout,
        what="the sink's log line via kubectl logs",
    )
    assert exec_in(node, namespace, "sink", "cat", "/etc/hostname").stdout.strip() == "sink"


def test_dns_names_of_a_service_resolve_in_a_pod(node: NodeCluster, namespace: str, mail_service_ip: str) -> None:
    for name in ("mail", f"mail.{namespace}.svc.cluster.local"):
        answer = exec_in(node, namespace, "client", "getent", "hosts", name, check=False).stdout
        assert answer.split()[:1] == [mail_service_ip], (name, answer)


def test_a_service_cluster_ip_reaches_its_pod_through_kube_proxy(
    node: NodeCluster, namespace: str, mail_service_ip: str
) -> None:
    assert eventually(
        lambda: smtp_banner(node, namespace, "client", mail_service_ip).startswith("220"),
        what="the sink's banner through the ClusterIP",
    )
    # kube-proxy's rules live in the node's own network namespace, not in the machine's.
    assert node.node
    inside = subprocess.run(
        ["ip", "netns", "exec", node.node.slot.netns, "iptables-save", "-t", "nat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    outside = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    assert f"{mail_service_ip}/32" in inside
    assert f"{mail_service_ip}/32" not in outside


def test_a_network_policy_denying_ingress_is_enforced(
    node: NodeCluster, namespace: str, run_pod: Callable[..., str]
) -> None:
    run_pod(namespace, "sink", "sink", "--labels=app=sink")
    run_pod(namespace, "client", "client")
    sink_ip = node.get("pod", "sink", "-n", namespace)["status"]["podIP"]
    eventually(
        lambda: smtp_banner(node, namespace, "client", sink_ip).startswith("220"),
        what="the sink's banner before any policy",
    )  # the sink listens a moment after it runs
    node.kubectl("apply", "-n", namespace, "-f", "-", input=DENY_INGRESS)
    eventually(
        lambda: smtp_banner(node, namespace, "client", sink_ip) == "",
        timeout=60,
        what="the connection refused once the policy is in place",
    )
    node.kubectl("delete", "networkpolicy", "deny-ingress", "-n", namespace)
    eventually(
        lambda: smtp_banner(node, namespace, "client", sink_ip).startswith("220"),
        timeout=60,
        what="the connection allowed again once the policy is gone",
    )


# The policy of the Kubernetes documentation's "Default deny all ingress traffic", for the sink only.
DENY_INGRESS = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-ingress
spec:
  podSelector:
    matchLabels: {app: sink}
  policyTypes: [Ingress]
"""


def test_a_memory_limit_is_a_real_cgroup_limit(node: NodeCluster, namespace: str, test_images: dict[str, str]) -> None:
    node.kubectl("create", "deployment", "limited", "-n", namespace, f"--image={test_images['client']}")
    node.kubectl("set", "resources", "deployment", "limited", "-n", namespace, "--limits=memory=64Mi,cpu=250m")
    node.kubectl("rollout", "status", "deployment/limited", "-n", namespace, "--timeout=180s")
    limit = exec_in(node, namespace, "deploy/limited", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert int(limit) == 64 * 1024 * 1024
    quota = exec_in(node, namespace, "deploy/limited", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout
    assert int(quota) == 25000  # 250m of a 100 ms period
