"""`make cluster`: a control plane in the foreground, state in .cluster/, until Ctrl-C."""

from __future__ import annotations

import sys

from .cluster import ControlPlane, kubectl_path
from .foreground import parse, run_in_foreground


def main() -> int:
    args = parse(
        "python -m controlplane",
        __doc__,
        lambda parser: parser.add_argument("--nodes", type=int, default=2, help="kwok nodes to create"),
    )
    # The kubeconfig appears only once the API answers, so scripts can wait for it.
    plane = ControlPlane(args.dir, nodes=args.nodes)

    def ready() -> str:
        return (
            f"control plane ready in {plane.startup_seconds:.1f} s at {plane.server}\n"
            f"  kubeconfig: {plane.kubeconfig}\n"
            f"  logs:       {plane.logs}\n"
            f"  try:        {kubectl_path()} --kubeconfig={plane.kubeconfig} get nodes\n"
            f"  or:         export KUBECONFIG={plane.kubeconfig}\n"
            "Ctrl-C stops it."
        )

    return run_in_foreground("control plane", plane, ready, plane.kubeconfig)


if __name__ == "__main__":
    sys.exit(main())
