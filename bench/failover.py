"""Failover: two operator replicas as manifests/cluster-wide-ha runs them (the harness of tests/apiserver/test_ha.py,
emulated API server); the leader is stopped, and the clock runs until a relay created at that moment has
its children from the other replica."""

from __future__ import annotations

import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench_failover(rounds: int) -> dict[str, Any]:
    from fetch_kube_tools import fetch
    from support.emulator import Cluster
    from support.ha import VARIANTS, EmulatorBackend, Fleet
    from support.samples import relay
    from support.tools import objects
    from support.tools import run as tool

    tools = ROOT / ".tools" / "bin"
    fetch(tools)
    cluster = Cluster()
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-ha-"))
    fleet = Fleet(EmulatorBackend(cluster), objects(tool(tools, *VARIANTS["kustomize-cluster-wide-ha"])), workdir)
    results: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
    try:
        for replica in fleet.replicas:
            replica.start()
        for round_number in range(rounds):
            for how in ("SIGKILL", "SIGTERM"):
                leader = fleet.leader()
                started = time.monotonic()
                leader.signal(getattr(signal, how))
                namespace = fleet.namespace(f"failover-{round_number}-{how.lower()}")
                fleet.api.create(relay(namespace))
                fleet.wait_children(namespace, timeout=120)
                results[how].append(time.monotonic() - started)
                assert leader.process is not None
                leader.process.wait(30)
                leader.start()  # as the kubelet restarts the container
                time.sleep(3)  # let it reach the stand-by loop
    finally:
        for replica in fleet.replicas:
            replica.stop()
        cluster.close()
    return {
        "rounds": rounds,
        **{how: {"runs": runs, "median": statistics.median(runs), "max": max(runs)} for how, runs in results.items()},
    }
