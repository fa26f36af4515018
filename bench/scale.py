"""The controller at scale on the real control plane: etcd, kube-apiserver, controller-manager, scheduler
and kwok built from the pinned Go modules (tools/controlplane), the operator as its shipped ServiceAccount.

Phases: idle operator; a create wave (N MailRelays over M namespaces, sent by a few client threads);
until every relay is Ready (kwok runs the pods); idle over two resync rounds; an update wave (every
spec changed once). For each phase: latencies from the bench's own watches, the operator's requests
and writes from the API server's audit log, and the CPU each process used (they share the cores).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml

from mailrelay.api.names import API_VERSION, CHILD_LABELS, KIND, PLURAL, RESOURCES

from accounting import process_cpu_seconds, rss_mb
from audit import AuditLog, requests_by_user, summarize
from stats import latency_summary
from watch import Key, Progress, Watch

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = {
    kind: f"{RESOURCES[kind].prefix}/{RESOURCES[kind].plural}" for kind in ("ConfigMap", "Deployment", "Service")
}
RELAYS = RESOURCES[KIND].prefix
MANAGED = ",".join(f"{k}={v}" for k, v in CHILD_LABELS.items())
UPDATE_MARKER = "message_size_limit = 20000000"
# The controller-manager's client is limited to 20 requests/s by default, which alone makes 1,000
# Deployments take minutes to get pods; large clusters raise it, and so does the bench (recorded).
CONTROLLER_MANAGER_QPS = 200


class Phases:
    """CPU seconds per process, and the audit log's byte offset, at each phase boundary."""

    def __init__(self, audit: AuditLog, processes: dict[str, int]) -> None:
        self.audit, self.processes = audit, processes
        self.marks: list[tuple[str, float, int, dict[str, float]]] = []

    def mark(self, name: str) -> None:
        cpu = {}
        for component, pid in self.processes.items():
            try:
                cpu[component] = process_cpu_seconds(pid)
            except (OSError, ValueError):
                cpu[component] = float("nan")
        times = os.times()
        cpu["bench (watches, clients)"] = times.user + times.system
        self.marks.append((name, time.monotonic(), self.audit.mark(), cpu))

    def between(self, start: str, end: str, user: str) -> dict[str, Any]:
        first = next(m for m in self.marks if m[0] == start)
        last = next(m for m in self.marks if m[0] == end)
        events = self.audit.since(first[2], last[2])
        wall = last[1] - first[1]
        cpu = {k: last[3][k] - first[3][k] for k in first[3]}
        return {
            "seconds": wall,
            "cpu_seconds": cpu,
            "cpu_cores_busy": sum(cpu.values()) / wall if wall else 0.0,
            "operator_api": summarize(events, user),
            "requests_by_user": requests_by_user(events),
        }


def _session(plane: Any) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override our CA, and proxies could apply
    session.cert = (str(plane.pki / "admin.crt"), str(plane.pki / "admin.key"))
    session.verify = str(plane.pki / "ca.crt")
    return session


def _install(plane: Any, workdir: Path) -> tuple[Path, str]:
    """CRD, namespace, ServiceAccount and RBAC from the cluster-wide kustomization, as shipped; returns a
    kubeconfig with the operator's ServiceAccount token and the user name the audit log knows it by."""
    shipped = plane.kubectl("kustomize", str(ROOT / "manifests" / "cluster-wide")).stdout
    docs = [d for d in yaml.safe_load_all(shipped) if d and d["kind"] != "Deployment"]
    plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
    for crd in (d for d in docs if d["kind"] == "CustomResourceDefinition"):
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    [account] = [d for d in docs if d["kind"] == "ServiceAccount"]
    namespace, name = account["metadata"]["namespace"], account["metadata"]["name"]
    kubeconfig = plane.service_account_kubeconfig(namespace, name, workdir / "operator.kubeconfig")
    return kubeconfig, f"system:serviceaccount:{namespace}:{name}"


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} scale: {text}", file=sys.stderr, flush=True)


def _wait(keys: list[Key], done_at: Any, timeout: float, what: str) -> dict[Key, float]:
    deadline = time.monotonic() + timeout
    finished: dict[Key, float] = {}
    say(f"waiting for {what}")
    while time.monotonic() < deadline:
        for key in keys:
            if key not in finished and (at := done_at(key)) is not None:
                finished[key] = at
        if len(finished) == len(keys):
            return finished
        time.sleep(0.2)
    raise RuntimeError(f"{what}: only {len(finished)} of {len(keys)} relays within {timeout:.0f} s")


def _resync_passes(metrics_url: str) -> float:
    """The operator's own count of passes the resync tick queued (it walks its cache, so the audit log
    shows no list of relays to count by)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('mailrelay_operator_reconcile_passes_total{trigger="resync"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _two_resync_rounds(metrics_url: str, relays: int, limit: float) -> int:
    """Wait until the resync has queued every relay twice more and those passes ran; returns the rounds."""
    first, deadline = _resync_passes(metrics_url), time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(1)
        rounds = int((_resync_passes(metrics_url) - first) // max(relays, 1))
        if rounds >= 2:
            time.sleep(1)
            return rounds
    say(f"idle: fewer than two resync rounds within {limit:.0f} s")
    return int((_resync_passes(metrics_url) - first) // max(relays, 1))


def _wave_figures(keys: list[Key], started: dict[Key, float], finished: dict[Key, float]) -> dict[str, Any]:
    return {
        "all_seconds": max(finished.values()) - min(started.values()),
        "latency_seconds": latency_summary([finished[k] - started[k] for k in keys]),
    }


def _send_all(session_for: Any, keys: list[Key], request: Any, started: dict[Key, float], clients: int) -> None:
    def one(key: Key) -> None:
        started[key] = time.monotonic()
        request(session_for(), key).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, keys))


def bench_scale(
    relays: int,
    namespaces: int,
    resync: int,
    nodes: int,
    clients: int = 4,
    timeout: float = 600,
    operator_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from controlplane import ControlPlane
    from support.operator import OperatorProcess
    from support.smtp_sink import free_port

    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-scale-"))
    plane = ControlPlane(
        workdir / "cluster",
        nodes=nodes,
        extra_args={
            "kube-controller-manager": [
                f"--kube-api-qps={CONTROLLER_MANAGER_QPS}",
                f"--kube-api-burst={2 * CONTROLLER_MANAGER_QPS}",
            ],
            # 0 means the log library's default, 100 MB, and 1,000 relays write more: rotation would lose events
            "kube-apiserver": ["--audit-log-maxsize=100000"],
        },
    )
    operator: OperatorProcess | None = None
    watches: list[Watch] = []
    try:
        plane.start()
        kubeconfig, user = _install(plane, workdir)
        names = [f"bench-{i}" for i in range(namespaces)]
        for name in names:
            plane.request(
                "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        keys: list[Key] = [(names[i % namespaces], f"relay-{i}") for i in range(relays)]
        progress = Progress(tuple(CHILDREN))
        progress.wanted_markers.append(UPDATE_MARKER)
        session = _session(plane)
        watches = [Watch(session, plane.server + RELAYS + f"/{PLURAL}", {}, progress.on_relay)]
        watches += [
            Watch(_session(plane), plane.server + url, {"labelSelector": MANAGED}, progress.on_child(kind))
            for kind, url in CHILDREN.items()
        ]
        for watch in watches:
            watch.start()
        local = threading.local()

        def session_for() -> requests.Session:
            if not hasattr(local, "session"):
                local.session = _session(plane)
            return local.session

        metrics_port = free_port()
        operator = OperatorProcess.run(
            kubeconfig,
            workdir / "operator.log",
            "--liveness-port",
            "0",
            "--metrics-port",
            str(metrics_port),
            MAILRELAY_RESYNC_SECONDS=str(resync),
            # kwok's pods have made-up addresses that are not this machine's: nothing may be sent there.
            MAILRELAY_DELIVERY_PROBE="false",
            MAILRELAY_LOG_FORMAT="plain",
            MAILRELAY_RETRY_SECONDS="1",
            # the leader Lease lives in the ServiceAccount's namespace, as in the pod
            POD_NAMESPACE=user.split(":")[2],
            POD_NAME="bench-operator",
            **(operator_env or {}),
        )
        operator.start()
        assert operator.process is not None
        processes = {**plane.pids(), "operator": operator.process.pid}
        phases = Phases(AuditLog(plane.audit_log), processes)
        time.sleep(8)  # the operator's start-up: imports, kopf's discovery and watches
        rss = {"idle": rss_mb(operator.process.pid)}
        phases.mark("start")

        started: dict[Key, float] = {}
        _send_all(
            session_for,
            keys,
            lambda s, k: s.post(
                f"{plane.server}{RELAYS}/namespaces/{k[0]}/{PLURAL}",
                json={
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": k[1], "namespace": k[0]},
                    # several relays share a namespace, so each needs its own Service name
                    "spec": {"mailFromFQDN": f"{k[1]}.bench.example.com", "service": {"name": f"mail-{k[1]}"}},
                },
            ),
            started,
            clients,
        )
        phases.mark("sent")
        create = _wave_figures(keys, started, _wait(keys, progress.created, timeout, "children and status"))
        phases.mark("created")
        rss["created"] = rss_mb(operator.process.pid)
        ready = _wave_figures(keys, started, _wait(keys, lambda k: progress.ready_at(k, 1), timeout, "Ready"))
        phases.mark("ready")
        rss["ready"] = rss_mb(operator.process.pid)

        time.sleep(3)  # the last status writes of the Ready wave settle
        say(f"idle until two resync rounds (every {resync} s) have run")
        phases.mark("idle-start")
        passes = _two_resync_rounds(f"http://127.0.0.1:{metrics_port}/metrics", relays, limit=max(timeout, 4 * resync))
        phases.mark("idle-end")
        rss["after_resyncs"] = rss_mb(operator.process.pid)

        updated_started: dict[Key, float] = {}
        _send_all(
            session_for,
            keys,
            lambda s, k: s.patch(
                f"{plane.server}{RELAYS}/namespaces/{k[0]}/{PLURAL}/{k[1]}",
                json={"spec": {"messageSizeLimitBytes": 20_000_000}},
                headers={"Content-Type": "application/merge-patch+json"},
            ),
            updated_started,
            clients,
        )
        update = _wave_figures(
            keys, updated_started, _wait(keys, lambda k: progress.updated(k, 2, UPDATE_MARKER), timeout, "update wave")
        )
        phases.mark("updated")
        rss["updated"] = rss_mb(operator.process.pid)

        idle = phases.between("idle-start", "idle-end", user)
        return {
            "relays": relays,
            "namespaces": namespaces,
            "nodes": nodes,
            "resync_seconds": resync,
            "controller_manager_qps": CONTROLLER_MANAGER_QPS,
            "operator_env": operator_env or {},
            "binaries": plane.binaries.versions if plane.binaries else {},
            "operator_user": user,
            "create": {**create, **phases.between("start", "created", user)},
            "ready": {**ready, **phases.between("start", "ready", user)},
            "idle": {**idle, "resync_rounds": passes},
            "update": {**update, **phases.between("idle-end", "updated", user)},
            "operator_rss_mb": rss,
            "watch_errors": [repr(w.error) for w in watches if w.error],
        }
    finally:
        for watch in watches:
            watch.stop()
        if operator is not None:
            operator.stop()
        plane.stop()
        if not os.environ.get("MAILRELAY_KEEP_BENCH_DIRS"):
            shutil.rmtree(workdir, ignore_errors=True)
