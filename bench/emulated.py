"""The controller against the emulated API server (tests/support/kube_emulator.py), labelled as such in the report.

Kept beside the real control plane figures (bench/scale.py) because it isolates the operator: the
emulator answers in-process without admission, defaulting, audit or other controllers.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from mailrelay.api.names import API_VERSION, KIND, PLURAL, RESOURCES

from accounting import rss_mb
from stats import percentile
from support.emulator import Cluster
from support.operator import OperatorProcess


def _stored(store: dict[Any, Any], kind: str, ns: str, name: str) -> Any:
    resource = RESOURCES[kind]
    return store.get((resource.group, resource.plural, ns, name))


def _converged(
    cluster: Cluster, keys: list[tuple[str, str]], generation: int, marker: str | None
) -> dict[tuple[str, str], bool]:
    """Per relay: all three children exist, the status shows `generation`, main.cf has `marker`."""
    store = cluster.server.store
    done = {}
    for ns, name in keys:
        relay = _stored(store, KIND, ns, name)
        config = _stored(store, "ConfigMap", ns, f"mailrelay-{name}")
        done[(ns, name)] = bool(
            relay
            and config
            and _stored(store, "Deployment", ns, f"mailrelay-{name}")
            and _stored(store, "Service", ns, f"mail-{name}")
            and (relay.get("status") or {}).get("observedGeneration") == generation
            and (marker is None or marker in config["data"]["main.cf"])
        )
    return done


def _wave(
    cluster: Cluster,
    keys: list[tuple[str, str]],
    started: dict[tuple[str, str], float],
    generation: int,
    marker: str | None,
    timeout: float,
) -> dict[str, Any]:
    finished: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < len(keys) and time.monotonic() < deadline:
        now = time.perf_counter()
        for key, ok in _converged(cluster, [k for k in keys if k not in finished], generation, marker).items():
            if ok:
                finished[key] = now
        time.sleep(0.05)
    if len(finished) < len(keys):
        raise RuntimeError(f"only {len(finished)} of {len(keys)} relays converged within {timeout}s")
    latencies = [finished[k] - started[k] for k in keys]
    return {
        "total_seconds": max(finished.values()) - min(started.values()),
        "p50_seconds": percentile(latencies, 0.5),
        "p95_seconds": percentile(latencies, 0.95),
    }


def _writes(cluster: Cluster) -> int:
    """Writes of relay state: Events and the leader Lease's renewals apart."""
    return sum(1 for _, what in list(cluster.server.writes) if not what.startswith(("events/", "leases/")))


def bench_controller(relays: int, namespaces: int, resync: int) -> dict[str, Any]:
    cluster = Cluster()
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-op-"))
    operator = OperatorProcess.run(
        cluster.write_kubeconfig(workdir / "kubeconfig"),
        workdir / "operator.log",
        MAILRELAY_RESYNC_SECONDS=str(resync),
        MAILRELAY_LOG_FORMAT="plain",
    )
    try:
        operator.start()
        assert operator.process is not None
        time.sleep(5)
        idle_rss = rss_mb(operator.process.pid)
        keys = [(f"bench-{i % namespaces}", f"relay-{i}") for i in range(relays)]
        started: dict[tuple[str, str], float] = {}
        writes_before = _writes(cluster)
        for ns, name in keys:
            started[(ns, name)] = time.perf_counter()
            cluster.create(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": name, "namespace": ns},
                    # several relays share a namespace, so each needs its own Service name
                    "spec": {"mailFromFQDN": f"{name}.bench.example.com", "service": {"name": f"mail-{name}"}},
                }
            )
        create = _wave(cluster, keys, started, 1, None, timeout=600)
        # The benchmark's own create (one per relay) is not the operator's doing.
        create["writes_per_relay"] = (_writes(cluster) - writes_before - relays) / relays
        loaded_rss = rss_mb(operator.process.pid)
        writes_before = _writes(cluster)
        for key in keys:
            started[key] = time.perf_counter()
            cluster.patch(PLURAL, key[0], key[1], {"spec": {"messageSizeLimitBytes": 20_000_000}})
        update = _wave(cluster, keys, started, 2, "message_size_limit = 20000000", timeout=600)
        update["writes_per_relay"] = (_writes(cluster) - writes_before - relays) / relays
        time.sleep(2)
        writes_before = _writes(cluster)
        idle_window = 2 * resync + 2
        time.sleep(idle_window)
        idle = {
            "seconds_watched": idle_window,
            "resync_seconds": resync,
            "writes": _writes(cluster) - writes_before,
            "resync_passes": operator.log().count("resync"),
        }
        return {
            "relays": relays,
            "namespaces": namespaces,
            "create": create,
            "update": update,
            "idle": idle,
            "rss_mb": {"idle": idle_rss, "loaded": loaded_rss},
        }
    finally:
        operator.stop()
        cluster.close()
