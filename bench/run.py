"""Benchmarks: what a relay costs per message and in memory, and the controller at scale.

    make bench                      # everything with the defaults below (about 12 minutes)
    python bench/run.py --help      # sizes, rounds, and which parts to run

Prints tables and writes bench/results/latest.json with every figure. The mail figure is CPU time
from the kernel's accounting of the relay's own processes (see bench/mailpath.py), so it does not
move with the load generator or the neighbours the way throughput does; throughput stays beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailrelay.api.names import API_VERSION, KIND
from mailrelay.api.spec import parse
from mailrelay.render.relay import render_relay

from report import report  # bench/ is on PYTHONPATH (make bench), with tests/, tools/ and hack/

ROOT = Path(__file__).resolve().parents[1]

PARTS = ("render", "mail", "scale", "emulated", "failover")


def bench_render(iterations: int) -> dict[str, Any]:
    relays = [
        parse(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": f"r{i}", "namespace": "ns", "uid": str(uuid.uuid4())},
                "spec": {
                    "mailFromFQDN": f"r{i}.example.com",
                    "rewrite": {
                        "keepDomains": ["corp.example.org"],
                        "rules": [{"pattern": "(.*)@db-[0-9]+", "replacement": "$1@x.example"}],
                    },
                    "relay": {"host": "smtp.example.net", "authSecretRef": {"name": "s"}},
                },
            }
        )
        for i in range(50)
    ]
    start = time.perf_counter()
    for i in range(iterations):
        render_relay(relays[i % len(relays)], secret_version="v1")
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(iterations // 5):
        parse(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {
                    "mailFromFQDN": f"r{i}.example.com",
                    "rewrite": {"rules": [{"pattern": "(.*)@db-[0-9]+", "replacement": "$1@x.example"}]},
                },
            }
        )
    parse_elapsed = time.perf_counter() - start
    return {
        "iterations": iterations,
        "renders_per_s": iterations / elapsed,
        "parses_per_s": (iterations // 5) / parse_elapsed,
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_start": load,
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1500, help="messages per mail run")
    parser.add_argument("--connections", type=int, default=8, help="concurrent SMTP sessions, one address each")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; every configuration runs once a round")
    parser.add_argument("--features", nargs="*", help="mail configurations besides stock and ours (default all)")
    parser.add_argument("--relays", type=int, default=1000, help="MailRelays on the real control plane")
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=10, help="kwok nodes")
    parser.add_argument("--resync", type=int, default=30, help="operator resync interval for the idle check")
    parser.add_argument(
        "--operator-env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the operator process in the scale run",
    )
    parser.add_argument("--emulated-relays", type=int, default=300, help="MailRelays on the emulated API server")
    parser.add_argument("--renders", type=int, default=20000)
    parser.add_argument("--failovers", type=int, default=2, help="rounds of stopping the leader (each kind)")
    parser.add_argument("--only", choices=PARTS, action="append")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    results: dict[str, Any] = {"machine": machine(), "command": " ".join(["bench/run.py", *sys.argv[1:]])}
    started = time.monotonic()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)

    def save() -> None:  # after each part, so a failure later keeps what was measured
        (out / "latest.json").write_text(json.dumps(results, indent=2, default=str))

    if "render" in parts:
        results["render"] = bench_render(args.renders)
    if "mail" in parts:
        from mailpath import bench_mail

        results["mail"] = bench_mail(args.messages, args.connections, args.rounds, args.features)
        save()
        print(report(results), flush=True)
    if "scale" in parts:
        from scale import bench_scale

        results["scale"] = bench_scale(
            args.relays,
            args.namespaces,
            args.resync,
            args.nodes,
            operator_env=dict(item.split("=", 1) for item in args.operator_env),
        )
        save()
    if "emulated" in parts:
        from emulated import bench_controller

        results["emulated"] = bench_controller(args.emulated_relays, 10, 10)
        save()
    if "failover" in parts:
        from failover import bench_failover

        results["failover"] = bench_failover(args.failovers)
    results["seconds"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    save()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
