"""A real Kubernetes control plane built from pinned Go modules, for the tests and `make cluster`.

from controlplane import ControlPlane
with ControlPlane(folder) as plane:     # builds once (cached), starts, waits until Ready
    plane.kubeconfig                     # admin kubeconfig (client certificate, system:masters)
    plane.kubectl("get", "nodes")        # the real kubectl, admin unless kubeconfig= is given
    plane.service_account_kubeconfig(ns, name, path)   # a TokenRequest token for a ServiceAccount
    plane.audit_log                      # JSON lines, one per request (Metadata level)
    plane.logs                           # <component>.log for etcd, kube-*, kwok
"""

from .build import Binaries, BuildError, ensure_binaries
from .cluster import ControlPlane, kubectl_path

__all__ = ["Binaries", "BuildError", "ControlPlane", "ensure_binaries", "kubectl_path"]
