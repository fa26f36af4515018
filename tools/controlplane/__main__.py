"""`make cluster`: a control plane in the foreground, state in .cluster/, until Ctrl-C."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .build import BuildError
from .cluster import ROOT, ControlPlane, install_signal_handlers, kubectl_path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__)
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="state, logs and kubeconfig")
    parser.add_argument("--nodes", type=int, default=2, help="kwok nodes to create")
    args = parser.parse_args()
    # A fresh cluster each time: the kubeconfig appears only once the API answers, so scripts can wait for it.
    shutil.rmtree(args.dir, ignore_errors=True)
    plane = ControlPlane(args.dir, nodes=args.nodes)
    install_signal_handlers()
    try:
        plane.start()
        kubectl = kubectl_path()
        print(
            f"control plane ready in {plane.startup_seconds:.1f} s at {plane.server}\n"
            f"  kubeconfig: {plane.kubeconfig}\n"
            f"  logs:       {plane.logs}\n"
            f"  try:        {kubectl} --kubeconfig={plane.kubeconfig} get nodes\n"
            f"  or:         export KUBECONFIG={plane.kubeconfig}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            plane.check_running()
            time.sleep(1)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the control plane", file=sys.stderr)
        return 0
    finally:
        plane.stop()
        plane.kubeconfig.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
