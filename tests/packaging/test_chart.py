"""The Helm chart as Helm users expect it: every value typed, described and rendered; names that
do not collide; the restricted Pod Security Standard; a `helm test` that checks the real operator.

Everything goes through the real `helm` binary; rendered objects are validated against the upstream
Kubernetes schemas of every supported version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mailrelay.api.names import RESOURCES
from mailrelay.version import OPERATOR_IMAGE, RELEASED_POSTFIX_IMAGE

import chart_readme
from support.emulator import Cluster
from support.kube_schemas import K8S_VERSIONS, validate
from support.operator import OperatorProcess
from support.paths import CHART, ROOT
from support.smtp_sink import free_port
from support.tools import objects, run

FULL_VALUES = Path(__file__).parent / "chart-full-values.yaml"
# kopf's and the Prometheus Operator's kinds: no upstream schema here (tests/packaging/test_monitoring.py
# checks the latter).
NO_UPSTREAM_SCHEMA = ("kopf.dev/v1", "monitoring.coreos.com/v1")
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def template(tools: Path, *args: str, namespace: str = "mailrelay-system", release: str = "mr") -> list[dict[str, Any]]:
    """`helm template`, every object validated against the oldest and newest supported Kubernetes."""
    docs = objects(run(tools, "helm", "template", release, str(CHART), "-n", namespace, *args))
    for doc in docs:
        if doc["apiVersion"] not in NO_UPSTREAM_SCHEMA:
            for version in (K8S_VERSIONS[0], K8S_VERSIONS[-1]):
                validate(doc, version)
    return docs


def helm_fails(tools: Path, *args: str) -> str:
    result = subprocess.run(
        [str(tools / "helm"), "template", "mr", str(CHART), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and "helm.sh/hook" not in d["metadata"].get("annotations", {})]
    return found


def test_every_value_is_typed_and_described() -> None:
    def walk(schema: dict[str, Any], values: dict[str, Any], prefix: str) -> None:
        properties = schema["properties"]
        assert set(values) == set(properties), prefix  # nothing undocumented, nothing unused
        for key, sub in properties.items():
            assert sub.get("description"), f"{prefix}{key} has no description"
            assert "type" in sub or "$ref" in sub, f"{prefix}{key} has no type"
            if sub.get("type") == "object" and "properties" in sub:
                walk(sub, values[key], f"{prefix}{key}.")

    walk(SCHEMA, VALUES, "")


def test_chart_readme_is_current() -> None:
    assert chart_readme.README.read_text() == chart_readme.render(), "run `make docs`"


def test_every_value_set_renders_valid_objects_for_every_supported_version(tools: Path) -> None:
    full = yaml.safe_load(FULL_VALUES.read_text())
    assert set(full) == set(VALUES), "full-values.yaml must set every value"
    docs = template(tools, "-f", str(FULL_VALUES))
    for doc in docs:
        if doc["apiVersion"] not in NO_UPSTREAM_SCHEMA:
            for version in K8S_VERSIONS[1:-1]:
                validate(doc, version)
    lint = run(tools, "helm", "lint", "--strict", str(CHART), "-f", str(FULL_VALUES))
    assert "0 chart(s) failed" in lint
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert deployment["metadata"]["name"] == "platform-mailrelay"
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "relay-op",
        "app.kubernetes.io/instance": "mr",
    }
    assert full["podLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"] == full["podAnnotations"]
    spec = pod["spec"]
    for key in ("imagePullSecrets", "priorityClassName", "nodeSelector", "tolerations", "affinity"):
        assert spec[key] == full[key], key
    assert spec["securityContext"] == full["podSecurityContext"]
    assert container["securityContext"] == full["securityContext"]
    assert container["resources"] == full["resources"]
    assert container["image"] == f"{full['image']['repository']}:{full['image']['tag']}"
    assert container["imagePullPolicy"] == "Always"
    assert full["extraEnv"] == container["env"][-len(full["extraEnv"]) :]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["MAILRELAY_POSTFIX_IMAGE"], env["MAILRELAY_RESYNC_SECONDS"], env["MAILRELAY_LOG_FORMAT"]) == (
        full["postfixImage"],
        "120",
        "plain",
    )
    assert {"--namespace=apps", "--namespace=billing", "--metrics-port=9191"} <= set(container["args"])
    assert env["MAILRELAY_LEASE_NAME"] == "platform-mailrelay"
    relay_monitor = next(d for d in docs if d["kind"] == "PodMonitor" and d["metadata"]["name"].endswith("-relays"))
    assert relay_monitor["spec"]["namespaceSelector"] == {"matchNames": ["apps", "billing"]}
    assert relay_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert relay_monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["annotations"] == full["monitoring"]["dashboard"]["annotations"]
    zone, host = spec["topologySpreadConstraints"]
    assert zone["labelSelector"] == deployment["spec"]["selector"]  # filled in: this release's operator pods
    assert host == full["topologySpreadConstraints"][1]  # the user's own selector is left alone
    assert (
        container["readinessProbe"]["httpGet"]
        == container["livenessProbe"]["httpGet"]
        == {"path": "/healthz", "port": "health"}
    )
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["name"] == spec["serviceAccountName"] == "mailrelay-sa"
    assert account["metadata"]["annotations"] == full["serviceAccount"]["annotations"]
    bound = {s["name"] for d in docs if d["kind"].endswith("Binding") for s in d["subjects"]}
    assert bound == {"mailrelay-sa"}
    [lease_role] = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "mailrelay-system"]
    assert {r["apiGroups"][0] for r in lease_role["rules"]} == {"coordination.k8s.io"}


def test_kubernetes_older_than_supported_is_refused(tools: Path) -> None:
    assert "chart requires kubeVersion: >=1.29.0-0" in helm_fails(tools, "--kube-version", "1.28.0")
    template(tools, "--kube-version", "1.29.0")


def test_rbac_and_service_account_can_come_from_elsewhere(tools: Path) -> None:
    docs = template(
        tools,
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=platform-operators",
    )
    kinds = {d["kind"] for d in docs}
    assert not {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & kinds
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operators"
    docs = template(tools, "--set", "serviceAccount.create=false")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={apps}"]])
def test_same_release_name_in_two_namespaces_does_not_collide(tools: Path, values: list[str]) -> None:
    """Cluster-wide: the ClusterRole and its binding; with watchNamespaces: the Roles in a shared namespace."""

    def names(namespace: str) -> set[tuple[str, str | None, str]]:
        docs = template(tools, *values, namespace=namespace)
        return {
            (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
            for d in docs
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding") or d["metadata"].get("namespace") == "apps"
        }

    first, second = names("team-a"), names("team-b")
    kinds = {"Role", "RoleBinding"} if values else {"ClusterRole", "ClusterRoleBinding"}
    assert {kind for kind, _, _ in first} == kinds  # with watchNamespaces, nothing cluster-wide
    assert not first & second


@pytest.mark.parametrize("replicas", ["1", "3"])
def test_nothing_of_kopf_peering_at_any_replica_count(tools: Path, replicas: str) -> None:
    """Replicas elect a leader with a Lease: no CRD of anyone else's is needed, every pod is alike."""
    text = run(tools, "helm", "template", "mr", str(CHART), "--include-crds", "--set", f"replicas={replicas}")
    assert "kopf.dev" not in text and "--peering" not in text
    docs = objects(text)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"] == [
        "mailrelays.mailrelay.dev"
    ]
    assert one(docs, "Deployment")["spec"]["replicas"] == int(replicas)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicas=two"], "at '/replicas': got string, want integer"),
        (["--set", "replicas=0"], "at '/replicas': minimum"),
        (
            ["--set", "resources.limits.memory=true"],
            "at '/resources/limits/memory': got boolean, want number or string",
        ),
        (["--set", "resources.limit.memory=1Gi"], "at '/resources': additional properties 'limit' not allowed"),
        (
            ["--set", "tolerations[0].operator=Maybe"],
            "at '/tolerations/0/operator': value must be one of 'Equal', 'Exists'",
        ),
        (["--set", "affinity.nodeAffinity=3"], "at '/affinity/nodeAffinity': got number, want object"),
        (["--set", "topologySpreadConstraints[0].maxSkew=1"], "at '/topologySpreadConstraints/0': missing properties"),
        (["--set", "extraEnv[0].value=x"], "at '/extraEnv/0': missing property 'name'"),
        (["--set", "podLabels.app\\.kubernetes\\.io/instance=x"], "invalid propertyName 'app.kubernetes.io/instance'"),
        (["--set", "podLabels.team=a/b"], "at '/podLabels/team'"),
        (["--set", "serviceAccount.create=yes"], "at '/serviceAccount/create': got string, want boolean"),
        (
            ["--set", "podSecurityContext.runAsUser=root"],
            "at '/podSecurityContext/runAsUser': got string, want integer",
        ),
        (["--set", "priorityClassName=High"], "at '/priorityClassName'"),
        (["--set", "nameOverride=Relay_Op"], "at '/nameOverride'"),
        (["--set", "rbac.enabled=true"], "at '/rbac': additional properties 'enabled' not allowed"),
    ],
)
def test_wrong_values_are_refused_with_a_clear_message(tools: Path, values: list[str], message: str) -> None:
    assert message in helm_fails(tools, *values)


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    """The restricted Pod Security Standard's checks that a chart's pods could miss."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for container in pod["containers"]:
        context = {**pod_context, **container.get("securityContext", {})}
        name = container["name"]
        if context.get("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if context.get("capabilities", {}).get("drop") != ["ALL"] or context.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities")
        if context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
    return problems


def test_every_pod_meets_the_restricted_pod_security_standard(tools: Path) -> None:
    docs = template(tools)
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    pods += [d["spec"] for d in docs if d["kind"] == "Pod"]
    assert len(pods) == 2
    assert [p for pod in pods for p in restricted_problems(pod)] == []
    assert restricted_problems({"containers": [{"name": "x", "securityContext": {"runAsNonRoot": True}}]}) == [
        "x: allowPrivilegeEscalation",
        "x: capabilities",
        "x: seccompProfile",
    ]


def test_helm_test_pod_checks_the_real_operator_through_its_service(
    tools: Path, tmp_path: Path, emulator: Cluster
) -> None:
    docs = template(tools)
    [test_pod] = [d for d in docs if d["kind"] == "Pod"]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    [check] = test_pod["spec"]["containers"]
    assert check["image"] == operator["image"]  # no image beyond the operator's
    url = urlsplit(next(e["value"] for e in check["env"] if e["name"] == "HEALTH_URL"))
    meta = service["metadata"]
    assert url.hostname == f"{meta['name']}.{meta['namespace']}.svc"
    [port] = service["spec"]["ports"]
    assert url.port == port["port"] and url.path == operator["livenessProbe"]["httpGet"]["path"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [health] = [p for p in operator["ports"] if p["name"] == port["targetPort"]]
    assert f"--liveness-port={health['containerPort']}" in operator["args"]
    # The pod's command, run here against a real operator process (served by the emulated API server).
    local_port = free_port()
    process = OperatorProcess.run(
        emulator.write_kubeconfig(tmp_path / "kubeconfig"),
        tmp_path / "op.log",
        "--liveness-port",
        str(local_port),
    ).start()
    try:
        env = {**os.environ, "HEALTH_URL": f"http://127.0.0.1:{local_port}{url.path}"}
        command = [sys.executable if c == "python3" else c for c in check["command"]]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0 and " 200" in result.stdout, result.stdout + result.stderr
    finally:
        process.stop()


def test_chart_metadata_and_rbac(tools: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["sources"] and chart["maintainers"] and chart["kubeVersion"].startswith(">=1.29")
    images = {i["name"]: i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    assert images == {"mailrelay-operator": OPERATOR_IMAGE, "postfix": RELEASED_POSTFIX_IMAGE}
    [crd] = yaml.safe_load(chart["annotations"]["artifacthub.io/crds"])
    assert crd["name"] == "mailrelays.mailrelay.dev"
    events = RESOURCES["Event"]
    for args in ([], ["--set", "watchNamespaces={apps}"]):
        rules = [r for d in template(tools, *args) if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
        assert any(
            events.group in r["apiGroups"]
            and events.plural in r["resources"]
            and {"create", "patch"} <= set(r["verbs"])
            for r in rules
        )


def test_packaged_chart_has_what_users_read(tools: Path, tmp_path: Path) -> None:
    run(tools, "helm", "package", str(CHART), "-d", str(tmp_path))
    [package] = tmp_path.glob("mailrelay-operator-*.tgz")
    with tarfile.open(package) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames()}
    assert {
        "README.md",
        "values.schema.json",
        "templates/tests/health.yaml",
        "crds/mailrelay.dev_mailrelays.yaml",
        ".helmignore",
    } <= names
