"""Every metric the shipped dashboard and alerts query exists: the operator's registry and what Debian's
exporter really serves from a real Postfix after mail was delivered and a recipient refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.controller import metrics

from support.dashboard import dashboard, dashboard_metrics, queried_metrics
from support.paths import CHART
from support.samples import make_relay


@pytest.fixture
def exported_relay_metrics(start_postfix: Any, sinks: list[Any]) -> set[str]:
    """The series names Debian's exporter really serves, after mail delivered and a recipient refused."""
    import smtplib
    import time
    import urllib.request

    from support.smtp_sink import Sink, free_port

    if not shutil.which("prometheus-postfix-exporter"):
        pytest.fail("Debian's prometheus-postfix-exporter is needed (make system-deps)", pytrace=False)
    sink = Sink().start()
    sinks.append(sink)
    instance = start_postfix(
        make_relay(
            {
                "mailFromFQDN": "mail.example.com",
                "allowedNetworks": ["127.0.0.4/30"],
                "recipients": {"allowDomains": ["example.org"]},
                "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"},
            }
        )
    )
    url = instance.start_exporter(free_port())
    with smtplib.SMTP(instance.listen, instance.port, source_address=("127.0.0.5", 0), timeout=30) as smtp:
        smtp.sendmail("app@pod.local", ["ops@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    # A recipient outside the allow-list is refused at RCPT, which the exporter counts by reply code.
    # (A client outside allowedNetworks is refused at CONNECT, which exporter 0.3.0 does not count.)
    with (
        smtplib.SMTP(instance.listen, instance.port, source_address=("127.0.0.5", 0), timeout=30) as smtp,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        smtp.sendmail("app@pod.local", ["someone@elsewhere.test"], b"Subject: no\r\n\r\nno\r\n")
    sink.wait_for(1)
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        if (
            "postfix_smtpd_messages_rejected_total" in text and "postfix_qmgr_messages_removed_total 1" in text
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_dashboard_queries_is_exported(tools: Path, exported_relay_metrics: set[str]) -> None:
    board = dashboard(tools)
    assert board["uid"] and board["title"] and board["panels"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    queried = dashboard_metrics(board)
    operator_names = metrics.names()
    assert queried - operator_names - exported_relay_metrics == set()
    assert queried & operator_names and queried & exported_relay_metrics  # both halves are on the board
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    alerted = set().union(*(queried_metrics(r["expr"]) for g in rules["groups"] for r in g["rules"]))
    assert alerted - operator_names - exported_relay_metrics == set()
