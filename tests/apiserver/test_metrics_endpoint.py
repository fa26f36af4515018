"""The running operator serves its /metrics (EMULATED API server: no fault here, a candidate to move to
the real control plane); what each metric counts is tests/unit/test_operator_metrics.py."""

from __future__ import annotations

from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from mailrelay.controller import metrics

from support.emulator import Cluster, roll_out, wait_children, wait_reason
from support.operator import OperatorProcess
from support.samples import relay
from support.smtp_sink import free_port
from support.wait import eventually


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_running_operator_serves_its_metrics(tmp_path: Path, emulator: Cluster) -> None:
    port = free_port()
    operator = OperatorProcess.run(
        emulator.write_kubeconfig(tmp_path / "kubeconfig"),
        tmp_path / "op.log",
        "--liveness-port",
        "0",
        "--metrics-port",
        str(port),
        MAILRELAY_RESYNC_SECONDS="1",
    ).start()
    try:
        # Created once the operator listed (so its first pass counts as `create`, not `resume`).
        eventually(lambda: "caches listed" in operator.log(), what="the operator's caches listed", timeout=60)
        emulator.create(relay("metrics"))
        wait_children(emulator, "metrics")
        roll_out(emulator, "metrics")
        wait_reason(emulator, "metrics", "Available")

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            found = values(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            ready = ("mailrelay_operator_relays", (("condition", "Ready"), ("reason", "Available"), ("status", "True")))
            # The delivery scrape runs in its own loop: its report reaches the status a pass later.
            told = (
                "mailrelay_operator_relays",
                (("condition", "Delivering"), ("reason", "NoRelayPods"), ("status", "Unknown")),
            )
            return found if found.get(ready) == 1 and found.get(told) == 1 else None

        found = eventually(scraped, what="the relay counted as Ready and Delivering in /metrics", timeout=30)
    finally:
        operator.stop()
    assert found[("mailrelay_operator_reconcile_passes_total", (("trigger", "create"),))] >= 1
    assert found[("mailrelay_operator_reconcile_passes_total", (("trigger", "resync"),))] >= 1
    assert found[("mailrelay_operator_reconcile_passes_total", (("trigger", "child"),))] >= 1
    assert found[("mailrelay_operator_reconcile_duration_seconds_count", (("trigger", "resync"),))] >= 1
    assert found[("mailrelay_operator_leader", ())] == 1
    assert found[("mailrelay_operator_status_writes_total", ())] >= 1
    assert (
        found[
            (
                "mailrelay_operator_relays",
                (("condition", "Delivering"), ("reason", "NoRelayPods"), ("status", "Unknown")),
            )
        ]
        == 1
    )
    assert {name for name, _ in found} <= metrics.names()
