"""`make cluster`: a control plane and a real node in the foreground, state in .cluster/, until Ctrl-C."""

from __future__ import annotations

import sys

from .cluster import NodeCluster
from controlplane import kubectl_path
from controlplane.foreground import parse, run_in_foreground


def main() -> int:
    args = parse(
        "python -m node",
        __doc__,
        lambda parser: parser.add_argument("--kwok-nodes", type=int, default=0, help="kwok nodes beside the real one"),
    )
    cluster = NodeCluster(args.dir, kwok_nodes=args.kwok_nodes)
    kubeconfig = args.dir / "kubeconfig"

    def ready() -> str:
        assert cluster.plane and cluster.node
        kubeconfig.write_text(cluster.kubeconfig.read_text())
        return (
            f"cluster ready in {cluster.startup_seconds:.0f} s at {cluster.plane.server}: node {cluster.node.name}\n"
            f"  kubeconfig: {kubeconfig}\n"
            f"  logs:       {cluster.plane.logs} and {cluster.node.logs}\n"
            f"  try:        {kubectl_path()} --kubeconfig={kubeconfig} get nodes,pods -A\n"
            "Ctrl-C stops it."
        )

    return run_in_foreground("cluster", cluster, ready, kubeconfig)


if __name__ == "__main__":
    sys.exit(main())
