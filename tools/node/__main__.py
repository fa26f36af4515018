"""`make cluster`: a control plane and a real node in the foreground, state in .cluster/, until Ctrl-C."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .cluster import NodeCluster
from controlplane import BuildError, kubectl_path
from controlplane.cluster import ROOT, install_signal_handlers


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m node", description=__doc__)
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="state, logs and kubeconfig")
    parser.add_argument("--kwok-nodes", type=int, default=0, help="kwok nodes beside the real one")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    cluster = NodeCluster(args.dir, kwok_nodes=args.kwok_nodes)
    install_signal_handlers()
    try:
        cluster.start()
        assert cluster.plane and cluster.node
        kubeconfig = args.dir / "kubeconfig"
        kubeconfig.write_text(cluster.kubeconfig.read_text())
        print(
            f"cluster ready in {cluster.startup_seconds:.0f} s at {cluster.plane.server}: node {cluster.node.name}\n"
            f"  kubeconfig: {kubeconfig}\n"
            f"  logs:       {cluster.plane.logs} and {cluster.node.logs}\n"
            f"  try:        {kubectl_path()} --kubeconfig={kubeconfig} get nodes,pods -A\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            cluster.check_running()
            time.sleep(1)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the cluster", file=sys.stderr)
        return 0
    finally:
        cluster.stop()
        (args.dir / "kubeconfig").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
