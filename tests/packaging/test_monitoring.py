"""The shipped monitoring: alert rules (promtool), PodMonitors that match what is rendered, the dashboard.

Everything is read from the Helm and kustomize output; the dashboard's metric names are checked
against what the real exporter (on a real Postfix) and the operator's registry expose.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.controller import metrics
from mailrelay.render import sidecar

import monitoring
from support.paths import CHART
from support.samples import make_relay, pod_template
from support.tools import objects, run

ALERT_TESTS = Path(__file__).parent / "alerts-test.yaml"
ENABLED = [
    "--set",
    "monitoring.podMonitors.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
]
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}


def helm(tools: Path, *args: str) -> list[dict[str, Any]]:
    return objects(run(tools, "helm", "template", "mr", str(CHART), "--namespace", "mailrelay-system", *args))


def kind(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == name]


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is needed (Debian package prometheus; make system-deps)", pytrace=False)
    return found


def test_monitoring_is_off_by_default(tools: Path) -> None:
    docs = helm(tools)
    assert not kind(docs, "PodMonitor") and not kind(docs, "PrometheusRule")
    assert not [d for d in kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_kustomize_carries_the_charts_rules_and_dashboard(tools: Path) -> None:
    assert monitoring.main(["monitoring.py"]) == 0, "run `make docs`"
    chart = helm(tools, *ENABLED)
    kustomized = objects(run(tools, "kubectl", "kustomize", "manifests/monitoring"))
    [chart_rule], [kustomize_rule] = kind(chart, "PrometheusRule"), kind(kustomized, "PrometheusRule")
    assert chart_rule["spec"] == kustomize_rule["spec"]
    [chart_dashboard] = [d for d in kind(chart, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    [kustomize_dashboard] = kind(kustomized, "ConfigMap")
    assert json.loads(chart_dashboard["data"]["mailrelay.json"]) == json.loads(
        kustomize_dashboard["data"]["mailrelay.json"]
    )
    assert chart_dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert kustomize_dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize("source", ["helm", "kustomize"])
def test_alert_rules_pass_promtool_check_and_unit_tests(tools: Path, tmp_path: Path, source: str) -> None:
    docs = (
        helm(tools, *ENABLED)
        if source == "helm"
        else objects(run(tools, "kubectl", "kustomize", "manifests/monitoring"))
    )
    [rule] = kind(docs, "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    unit = yaml.safe_load((ALERT_TESTS).read_text())
    unit["rule_files"] = [str(rules)]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in unit["tests"] for t in case["alert_rule_test"]}
    assert alerts == tested  # every alert has a unit test


def test_promtool_unit_tests_do_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text((CHART / "files" / "alerts.yaml").read_text())
    unit = yaml.safe_load((ALERT_TESTS).read_text())
    unit["rule_files"] = [str(rules)]
    unit["tests"][0]["alert_rule_test"][0]["eval_time"] = "15m"  # the auth alert fires by then
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "MailRelaySmarthostAuthFailed" in result.stdout + result.stderr


@pytest.mark.parametrize("source", ["helm", "kustomize"])
def test_pod_monitors_select_the_rendered_pods_and_ports(tools: Path, source: str) -> None:
    if source == "helm":
        docs = helm(tools, *ENABLED)
        operator = next(d for d in docs if d["kind"] == "Deployment")
    else:
        docs = objects(run(tools, "kubectl", "kustomize", "manifests/monitoring"))
        operator = next(
            d
            for d in objects(run(tools, "kubectl", "kustomize", "manifests/cluster-wide"))
            if d["kind"] == "Deployment"
        )
    relay_pod = pod_template(make_relay({"mailFromFQDN": "a.example"}))
    relay_ports = {p["name"] for c in relay_pod["spec"]["containers"] for p in c.get("ports", [])}
    operator_pod = operator["spec"]["template"]
    [container] = operator_pod["spec"]["containers"]
    [metrics_port] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert f"--metrics-port={metrics_port['containerPort']}" in container["args"]
    matched = []
    for monitor in kind(docs, "PodMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        for pod, ports in ((relay_pod, relay_ports), (operator_pod, {p["name"] for p in container["ports"]})):
            if selector.items() <= pod["metadata"]["labels"].items():
                assert endpoint["port"] in ports
                matched.append(pod is relay_pod)
    assert sorted(matched) == [False, True]  # one monitor each, for the operator and the relays
    assert sidecar.PORT_NAME in relay_ports


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if not following.startswith("(") and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_the_expression_reader_finds_metrics_only() -> None:
    assert queried_metrics('histogram_quantile(0.95, sum by (le, trigger) (rate(a_bucket{x="y"}[5m]))) / b') == {
        "a_bucket",
        "b",
    }


def dashboard(tools: Path) -> dict[str, Any]:
    [config_map] = [
        d for d in helm(tools, *ENABLED) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    parsed: dict[str, Any] = json.loads(config_map["data"]["mailrelay.json"])
    return parsed


def dashboard_metrics(board: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs and all(exprs)
    return set().union(*(queried_metrics(e) for e in exprs))


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


@pytest.mark.parametrize(
    "variant",
    [
        "kustomize:cluster-wide",
        "kustomize:namespaced",
        "kustomize:cluster-wide-ha",
        "helm:",
        "helm:watchNamespaces={apps}",
    ],
)
def test_every_install_lets_the_operator_read_relay_pods_and_their_log(tools: Path, variant: str) -> None:
    """The resync lists a relay's pods and, while mail is deferred, reads their log; pods are only read
    (the watch is the drain report's)."""
    tool, _, setting = variant.partition(":")
    docs = (
        objects(run(tools, "kubectl", "kustomize", f"manifests/{setting}"))
        if tool == "kustomize"
        else helm(tools, *(["--set", setting] if setting else []))
    )
    granted = {
        (res, verb)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        for r in d["rules"]
        if r["apiGroups"] == [""]
        for res in r["resources"]
        if res.startswith("pods")
        for verb in r["verbs"]
    }
    assert granted == {("pods", "list"), ("pods", "watch"), ("pods/log", "get")}
