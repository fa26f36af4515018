"""The shipped monitoring: alert rules (promtool), PodMonitors that match what is rendered, the dashboard.

Everything is read from the Helm and kustomize output; tests/mail/test_dashboard.py checks the dashboard's
metric names against what the real exporter (on a real Postfix) and the operator's registry expose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.render import sidecar

import monitoring
from support.dashboard import ENABLED, helm
from support.paths import CHART
from support.samples import make_relay, pod_template
from support.tools import objects, run

ALERT_TESTS = Path(__file__).parent / "alerts-test.yaml"


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
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    assert count >= 12  # the relays', the operator's and the ClusterSmarthosts' alerts
    assert check.returncode == 0 and f"SUCCESS: {count} rules found" in check.stdout, check.stdout + check.stderr
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
