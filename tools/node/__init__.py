"""A real Kubernetes node beside the control plane of tools/controlplane, for the tests and `make cluster`.

    from node import NodeCluster
    with NodeCluster(folder) as cluster:   # builds once (cached), pushes images, starts, waits until Ready
        cluster.kubeconfig                  # admin kubeconfig
        cluster.kubectl("get", "nodes")     # the real kubectl
        cluster.plane                       # the ControlPlane (request(), logs, ...)
        cluster.node                        # the Node: name, slot (addresses), logs, ctr(...) on its containerd

kubelet and kube-proxy from the control plane's k8s.io/kubernetes pin, Debian's containerd, runc and CNI
plugins, CoreDNS, kube-router's NetworkPolicy firewall and the local registry, in a network namespace of
the node's own; see docs/node.md.
"""

from .cluster import NodeCluster
from .node import Node

__all__ = ["Node", "NodeCluster"]
