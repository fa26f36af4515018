"""Benchmarks: relay throughput against stock Postfix, controller convergence at scale, render speed, RSS.

    make bench                      # everything with the defaults below
    python bench/run.py --help      # sizes, rounds, and which parts to run

Prints tables; also writes bench/results/latest.json. Absolute figures on a shared machine are
noisy: compare the ratios, which come from configurations run alternately in the same run.
Each mail run checks every message arrived exactly once (and rewritten, for our configuration).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mailrelay.identity import API_VERSION, GROUP, KIND, PLURAL, RESOURCES  # noqa: E402
from mailrelay.local import LocalPostfix, postfix_problem  # noqa: E402
from mailrelay.render import render  # noqa: E402
from mailrelay.spec import parse  # noqa: E402

from cluster import Cluster, Operator  # noqa: E402
from smtp_sink import free_port  # noqa: E402

FQDN = "bench.example.com"
# A stock relay: what a hand-rolled Postfix chart typically ships. No sender rewriting at all.
STOCK_MAIN_CF = """\
compatibility_level = 3.6
myhostname = relay.bench.invalid
mydestination =
inet_interfaces = all
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128 10.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = /dev/stdout
relayhost = [127.0.0.1]:{port}
smtp_tls_security_level = none
"""


# --- mail path --------------------------------------------------------------------------------

class SinkProcess:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.path = workdir / f"sink-{self.port}.tsv"
        self.path.touch()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py"), str(self.port),
                                         str(self.path)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def count(self) -> int:
        with self.path.open("rb") as f:
            return sum(1 for _ in f)

    def lines(self) -> list[list[str]]:
        return [line.split("\t") for line in self.path.read_text().splitlines()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _send(port: int, messages: list[EmailMessage], senders: list[str], errors: list[BaseException]) -> None:
    import smtplib

    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for sender, msg in zip(senders, messages, strict=True):
                smtp.send_message(msg, from_addr=sender, to_addrs=["sink@example.org"])
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def _batch(count: int) -> tuple[list[EmailMessage], list[str], list[str]]:
    messages, senders, ids = [], [], []
    for i in range(count):
        msg = EmailMessage()
        sender = f"worker{i % 7}@pod-{i % 13}.default.svc.cluster.local"
        msg["From"] = sender
        msg["To"] = "sink@example.org"
        msg["Subject"] = f"bench {i}"
        msg["Message-ID"] = f"<{uuid.uuid4()}@bench>"
        msg.set_content("benchmark message\n" * 20)
        messages.append(msg)
        senders.append(sender)
        ids.append(msg["Message-ID"])
    return messages, senders, ids


def mail_run(kind: str, count: int, connections: int, workdir: Path) -> dict[str, Any]:
    """One timed run: `count` messages over `connections` SMTP sessions, until all reach the sink."""
    sink = SinkProcess(workdir)
    instance: LocalPostfix | None = None
    try:
        target = sink.port
        if kind != "sink":
            relay = parse({"apiVersion": API_VERSION, "kind": KIND,
                           "metadata": {"name": "bench", "namespace": "bench"},
                           "spec": {"mailFromFQDN": FQDN, "relay": {"host": "127.0.0.1", "port": sink.port,
                                                                     "tls": "None"}}})
            extra = {"main.cf": STOCK_MAIN_CF.format(port=sink.port)} if kind == "stock" else None
            instance = LocalPostfix(relay, workdir / f"{kind}-{uuid.uuid4().hex[:6]}", port=free_port(),
                                    extra_files=extra)
            instance.start()
            target = instance.port
        messages, senders, ids = _batch(count)
        errors: list[BaseException] = []
        share = [(messages[i::connections], senders[i::connections]) for i in range(connections)]
        threads = [threading.Thread(target=_send, args=(target, m, s, errors)) for m, s in share]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = time.perf_counter() - start
        deadline = time.monotonic() + 300
        while sink.count() < count and time.monotonic() < deadline and not errors:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        time.sleep(0.5)  # duplicates would arrive now
        lines = sink.lines()
        if errors:
            raise RuntimeError(f"{kind}: sending failed: {errors[0]!r}")
        got_ids = [line[1] for line in lines]
        if len(lines) != count or sorted(got_ids) != sorted(ids):
            raise RuntimeError(f"{kind}: {len(lines)} messages arrived, {len(set(got_ids))} distinct, "
                               f"expected {count} exactly once")
        if kind == "ours" and not all(line[0].endswith(f"@{FQDN}") and line[2].endswith(f"@{FQDN}")
                                      for line in lines):
            raise RuntimeError("ours: a message left without the rewritten sender")
        if kind == "stock" and any(line[0].endswith(f"@{FQDN}") for line in lines):
            raise RuntimeError("stock: unexpected rewriting")
        return {"kind": kind, "messages": count, "seconds": elapsed, "accept_seconds": accepted,
                "msg_per_s": count / elapsed}
    finally:
        if instance is not None:
            instance.stop()
        sink.stop()


def bench_mail(count: int, connections: int, rounds: int) -> dict[str, Any]:
    problem = postfix_problem()
    if problem:
        raise SystemExit(f"mail benchmark needs Postfix: {problem}")
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-"))
    workdir.chmod(0o755)
    mail_run("ours", min(200, count), connections, workdir)  # warm-up: page cache, Postfix binaries
    runs: dict[str, list[dict[str, Any]]] = {"sink": [], "ours": [], "stock": []}
    runs["sink"].append(mail_run("sink", count, connections, workdir))
    for round_number in range(rounds):
        # Alternate, and swap who goes first each round, so drift in machine load hits both alike.
        order = ("ours", "stock") if round_number % 2 == 0 else ("stock", "ours")
        for kind in order:
            runs[kind].append(mail_run(kind, count, connections, workdir))
    summary = {kind: statistics.median(r["msg_per_s"] for r in results) for kind, results in runs.items()}
    summary["ratio"] = summary["ours"] / summary["stock"]
    paired = [o["msg_per_s"] / s["msg_per_s"] for o, s in zip(runs["ours"], runs["stock"], strict=True)]
    summary["round_ratio_min"], summary["round_ratio_max"] = min(paired), max(paired)
    return {"runs": runs, "median_msg_per_s": summary, "messages": count, "connections": connections,
            "rounds": rounds}


# --- controller -----------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _converged(cluster: Cluster, keys: list[tuple[str, str]], generation: int,
               marker: str | None) -> dict[tuple[str, str], bool]:
    """Per relay: all three children exist, the status shows `generation`, main.cf has `marker`."""
    store = cluster.server.store
    done = {}
    for ns, name in keys:
        relay = store.get((GROUP, PLURAL, ns, name))
        config = store.get((RESOURCES["ConfigMap"].group, RESOURCES["ConfigMap"].plural, ns, f"mailrelay-{name}"))
        done[(ns, name)] = bool(
            relay and config and store.get((RESOURCES["Deployment"].group, RESOURCES["Deployment"].plural, ns,
                                      f"mailrelay-{name}"))
            and store.get((RESOURCES["Service"].group, RESOURCES["Service"].plural, ns, f"mail-{name}"))
            and (relay.get("status") or {}).get("observedGeneration") == generation
            and (marker is None or marker in config["data"]["main.cf"]))
    return done


def _wave(cluster: Cluster, keys: list[tuple[str, str]], started: dict[tuple[str, str], float], generation: int,
          marker: str | None, timeout: float) -> dict[str, Any]:
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
    return {"total_seconds": max(finished.values()) - min(started.values()),
            "p50_seconds": percentile(latencies, 0.5), "p95_seconds": percentile(latencies, 0.95)}


def _writes(cluster: Cluster) -> int:
    return sum(1 for _, what in list(cluster.server.writes) if not what.startswith("events/"))


def bench_controller(relays: int, namespaces: int, resync: int) -> dict[str, Any]:
    cluster = Cluster()
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-op-"))
    operator = Operator(cluster.write_kubeconfig(workdir / "kubeconfig"), workdir / "operator.log",
                        MAILRELAY_RESYNC_SECONDS=str(resync), MAILRELAY_LOG_FORMAT="plain")
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
            cluster.create({"apiVersion": API_VERSION, "kind": KIND,
                            "metadata": {"name": name, "namespace": ns},
                            # several relays share a namespace, so each needs its own Service name
                            "spec": {"mailFromFQDN": f"{name}.bench.example.com",
                                     "service": {"name": f"mail-{name}"}}})
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
        idle = {"seconds_watched": idle_window, "resync_seconds": resync,
                "writes": _writes(cluster) - writes_before,
                "resync_passes": operator.log().count("resync")}
        return {"relays": relays, "namespaces": namespaces, "create": create, "update": update, "idle": idle,
                "rss_mb": {"idle": idle_rss, "loaded": loaded_rss}}
    finally:
        operator.stop()
        cluster.close()


# --- rendering ------------------------------------------------------------------------------

def bench_render(iterations: int) -> dict[str, Any]:
    relays = [parse({"apiVersion": API_VERSION, "kind": KIND,
                     "metadata": {"name": f"r{i}", "namespace": "ns", "uid": str(uuid.uuid4())},
                     "spec": {"mailFromFQDN": f"r{i}.example.com",
                              "rewrite": {"keepDomains": ["corp.example.org"],
                                          "rules": [{"pattern": "(.*)@db-[0-9]+", "replacement": "$1@x.example"}]},
                              "relay": {"host": "smtp.example.net", "authSecretRef": {"name": "s"}}}})
              for i in range(50)]
    start = time.perf_counter()
    for i in range(iterations):
        render(relays[i % len(relays)], secret_version="v1")
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(iterations // 5):
        parse({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "r", "namespace": "n"},
               "spec": {"mailFromFQDN": f"r{i}.example.com", "rewrite": {"rules": [
                   {"pattern": "(.*)@db-[0-9]+", "replacement": "$1@x.example"}]}}})
    parse_elapsed = time.perf_counter() - start
    return {"iterations": iterations, "renders_per_s": iterations / elapsed,
            "parses_per_s": (iterations // 5) / parse_elapsed}


# --- failover -------------------------------------------------------------------------------

def bench_failover(rounds: int) -> dict[str, Any]:
    """Two replicas as manifests/cluster-wide-ha runs them (tests/test_ha.py's harness, emulated API):
    stop the leader, time until a relay created at that moment has its children from the other one."""
    import signal

    from ha_backend import EmulatorBackend
    from test_ha import VARIANTS, Fleet, relay
    from test_packaging import objects
    from test_packaging import run as tool

    sys.path.insert(0, str(ROOT / "tests" / "tools"))
    from fetch_kube_tools import fetch

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
    return {"rounds": rounds, **{how: {"runs": runs, "median": statistics.median(runs), "max": max(runs)}
                                 for how, runs in results.items()}}


# --- report ---------------------------------------------------------------------------------

def report(results: dict[str, Any]) -> str:
    out = [f"machine: {results['machine']}", ""]
    if "mail" in results:
        mail = results["mail"]
        med = mail["median_msg_per_s"]
        out += [f"Mail path: {mail['messages']} messages, {mail['connections']} connections, "
                f"{mail['rounds']} alternating rounds (median)",
                "| configuration | msg/s | runs (msg/s) |", "|---|---|---|"]
        for kind, label in (("sink", "client -> sink directly (harness limit)"),
                            ("ours", "Postfix, rendered MailRelay config"),
                            ("stock", "Postfix, stock relay config (no rewriting)")):
            runs = ", ".join(f"{r['msg_per_s']:.0f}" for r in mail["runs"][kind])
            out.append(f"| {label} | {med[kind]:.0f} | {runs} |")
        out += [f"| ratio ours/stock | {med['ratio']:.3f} | per round {med['round_ratio_min']:.2f} to "
                f"{med['round_ratio_max']:.2f}; goal >= 0.95 |", ""]
    if "controller" in results:
        ctl = results["controller"]
        out += [f"Controller: {ctl['relays']} MailRelays in {ctl['namespaces']} namespaces (kmock emulator)",
                "| wave | all converged (s) | p50 (s) | p95 (s) | operator writes per relay |", "|---|---|---|---|---|"]
        for wave in ("create", "update"):
            w = ctl[wave]
            out.append(f"| {wave} | {w['total_seconds']:.1f} | {w['p50_seconds']:.2f} | {w['p95_seconds']:.2f} | "
                       f"{w['writes_per_relay']:.2f} |")
        idle = ctl["idle"]
        out += [f"| idle ({idle['seconds_watched']} s, resync every {idle['resync_seconds']} s) | | | | "
                f"{idle['writes']} writes in total |",
                "", f"Operator RSS: idle {ctl['rss_mb']['idle']:.0f} MB, with {ctl['relays']} relays "
                f"{ctl['rss_mb']['loaded']:.0f} MB (goals 90 / 150 MB)", ""]
    if "failover" in results:
        f = results["failover"]
        out += [f"Failover: 2 replicas of manifests/cluster-wide-ha, {f['rounds']} rounds; leader stopped -> a relay "
                "created then is reconciled by the other", "| leader stopped by | median (s) | max (s) | runs (s) |",
                "|---|---|---|---|"]
        for how in ("SIGKILL", "SIGTERM"):
            out.append(f"| {how} | {f[how]['median']:.1f} | {f[how]['max']:.1f} | "
                       f"{', '.join(f'{r:.1f}' for r in f[how]['runs'])} |")
        out.append("")
    if "render" in results:
        r = results["render"]
        out += [f"Render: {r['renders_per_s']:.0f} relays/s (spec -> 3 manifests; goal >= 2000); "
                f"parse+validate: {r['parses_per_s']:.0f}/s", ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating rounds of ours/stock (single runs vary by about 10%% here)")
    parser.add_argument("--relays", type=int, default=300)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--resync", type=int, default=10, help="operator resync interval for the idle check")
    parser.add_argument("--renders", type=int, default=20000)
    parser.add_argument("--failovers", type=int, default=3, help="rounds of stopping the leader (each kind)")
    parser.add_argument("--only", choices=["mail", "controller", "render", "failover"], action="append")
    args = parser.parse_args()
    parts = set(args.only or ["mail", "controller", "render", "failover"])
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.machine()}, "
                                          f"{len(__import__('os').sched_getaffinity(0))} cores, "
                                          f"Python {platform.python_version()}"}
    if "render" in parts:
        results["render"] = bench_render(args.renders)
    if "mail" in parts:
        results["mail"] = bench_mail(args.messages, args.connections, args.rounds)
    if "controller" in parts:
        results["controller"] = bench_controller(args.relays, args.namespaces, args.resync)
    if "failover" in parts:
        results["failover"] = bench_failover(args.failovers)
    text = report(results)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
