"""What platform teams install: kustomize bases, the Helm chart, the images, examples and docs.

Real `helm` and `kubectl` binaries (from the PyPI package that ships them) build and lint; every
object they produce is validated against the upstream Kubernetes schemas.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.api.names import RESOURCES
from mailrelay.version import OPERATOR_IMAGE, RELEASED_POSTFIX_IMAGE, __version__

import upstream_schemas
from support.crd_schema import check
from support.kube_schemas import NEWEST, OLDEST, validate
from support.paths import CHART, CRD_PATH, ROOT, SMARTHOST_CRD_PATH
from support.tools import objects, run

KUSTOMIZATIONS = ["cluster-wide", "namespaced", "cluster-wide-ha"]
CUSTOM_KINDS = {"MailRelay"}  # not in the upstream schemas; checked against our CRD


def validate_all(docs: list[dict[str, Any]], crd: dict[str, Any]) -> None:
    assert docs, "nothing was rendered"
    for doc in docs:
        if doc["kind"] == "MailRelay":
            assert check(crd, doc) == [], doc["metadata"]["name"]
        elif doc["kind"] == "ClusterSmarthost":
            assert check(yaml.safe_load(SMARTHOST_CRD_PATH.read_text()), doc) == [], doc["metadata"]["name"]
        else:
            for version in (OLDEST, NEWEST):
                validate(doc, version)


@pytest.mark.parametrize("variant", KUSTOMIZATIONS)
def test_kustomize_variants_build_and_validate(tools: Path, crd: dict[str, Any], variant: str) -> None:
    docs = objects(run(tools, "kubectl", "kustomize", f"manifests/{variant}"))
    validate_all(docs, crd)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "ServiceAccount", "Deployment", "Namespace"} <= kinds
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ("--namespace=$(POD_NAMESPACE)" in args) == (variant == "namespaced")
    assert not [a for a in args if a.startswith(("--peering", "--standby"))]  # kopf peering is gone
    assert deployment["spec"]["replicas"] == (2 if variant == "cluster-wide-ha" else 1)
    events = RESOURCES["Event"]
    assert any(
        events.group in r["apiGroups"] and events.plural in r["resources"] and {"create", "patch"} <= set(r["verbs"])
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        for r in d["rules"]
    ), "events not allowed"
    if variant == "namespaced":
        assert not [
            r
            for d in docs
            if d["kind"] == "ClusterRole"
            for r in d["rules"]
            if r["apiGroups"] != ["apiextensions.k8s.io"]
        ], "namespaced variant grants cluster-wide access"


def _operator_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["spec"])


def test_operator_deployment_is_locked_down(tools: Path) -> None:
    pod = _operator_pod(objects(run(tools, "kubectl", "kustomize", "manifests/cluster-wide")))
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]


def test_rbac_is_least_privilege(tools: Path) -> None:
    docs = objects(run(tools, "kubectl", "kustomize", "manifests/cluster-wide"))
    rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    verbs = {(g, res): set(r["verbs"]) for r in rules for g in r["apiGroups"] for res in r["resources"]}
    assert verbs[("", "secrets")] == {"get", "create", "patch"}  # never list/watch: no bulk read
    # Only children the spec can stop wanting: a renamed Service, a NetworkPolicy switched off, the
    # other queue mode's workload, a budget below two replicas.
    assert {key for key, v in verbs.items() if "delete" in v} == {
        ("", "services"),
        ("networking.k8s.io", "networkpolicies"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("policy", "poddisruptionbudgets"),
    }
    assert verbs[("", "pods")] == {"list", "watch"}  # read only: the drain's termination message
    assert all(
        "update" not in v and "*" not in v
        for key, v in verbs.items()
        if key not in (("mailrelay.dev", "mailrelays/finalizers"), ("mailrelay.dev", "clustersmarthosts/finalizers"))
    )
    assert all("*" not in r["resources"] and "*" not in r["apiGroups"] for r in rules)
    # The events the operator posts (identity.RESOURCES): created, and patched to count a repeat.
    events = RESOURCES["Event"]
    assert {"create", "patch"} <= verbs[(events.group, events.plural)]


def _granted(docs: list[dict[str, Any]], namespace: str) -> dict[tuple[str, str], set[str]]:
    """Verbs on namespaced resources in `namespace`: from ClusterRoles bound cluster-wide and Roles there."""
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace]
    roles += [cluster_roles[b["roleRef"]["name"]] for b in docs if b["kind"] == "ClusterRoleBinding"]
    verbs: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    verbs.setdefault((group, resource), set()).update(rule["verbs"])
    return verbs


@pytest.mark.parametrize(
    ("source", "namespace"),
    [
        (("kubectl", "kustomize", "manifests/cluster-wide"), "apps"),
        (("kubectl", "kustomize", "manifests/namespaced"), "mailrelay-system"),
        (("helm", "template", "mr", str(CHART), "-n", "mailrelay-system"), "apps"),
        (("helm", "template", "mr", str(CHART), "-n", "mailrelay-system", "--set", "watchNamespaces={apps}"), "apps"),
    ],
)
def test_rbac_grants_what_the_operator_writes_and_watches(tools: Path, source: tuple[str, ...], namespace: str) -> None:
    """Every child kind the controller watches and applies, in every install variant."""
    from mailrelay.api.names import CHILD_KINDS

    verbs = _granted(objects(run(tools, *source)), namespace)
    for kind in CHILD_KINDS:
        key = (RESOURCES[kind].group, RESOURCES[kind].plural)
        assert {"get", "list", "watch", "create", "patch"} <= verbs.get(key, set()), key
    assert "delete" in verbs[("networking.k8s.io", "networkpolicies")]


def test_helm_chart_lints(tools: Path) -> None:
    output = run(tools, "helm", "lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "replicas=2"],
        ["--set", "watchNamespaces={apps,billing}"],
        [
            "--set",
            "replicas=3",
            "--set",
            "watchNamespaces={apps}",
            "--set",
            "image.tag=9.9.9",
            "--set",
            "nodeSelector.pool=system",
        ],
    ],
)
def test_helm_template_renders_valid_objects(tools: Path, crd: dict[str, Any], values: list[str]) -> None:
    docs = objects(
        run(tools, "helm", "template", "mr", str(CHART), "-n", "mailrelay-system", "--include-crds", *values)
    )
    validate_all(docs, crd)
    pod = _operator_pod(docs)
    args = pod["containers"][0]["args"]
    if "watchNamespaces={apps,billing}" in values:
        assert {"--namespace=apps", "--namespace=billing"} <= set(args)
        assert {
            d["metadata"]["namespace"]
            for d in docs
            if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader-election")
        } == {"apps", "billing"}
    assert not [a for a in args if a.startswith(("--peering", "--standby"))]  # every replica alike
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]
    [lease_role] = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")]
    assert lease_role["metadata"]["namespace"] == "mailrelay-system"


def test_helm_refuses_bad_values(tools: Path) -> None:
    binary = shutil.which("helm") or str(tools / "helm")
    result = subprocess.run(
        [binary, "template", "mr", str(CHART), "--set", "replicas=0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode != 0 and "replicas" in result.stderr


def test_one_source_for_versions_and_images(tools: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == __version__
    assert values["postfixImage"] == RELEASED_POSTFIX_IMAGE
    assert f"{values['image']['repository']}:{chart['appVersion']}" == OPERATOR_IMAGE
    pod = _operator_pod(objects(run(tools, "kubectl", "kustomize", "manifests/cluster-wide")))
    [container] = pod["containers"]
    assert container["image"] == OPERATOR_IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MAILRELAY_POSTFIX_IMAGE"] == RELEASED_POSTFIX_IMAGE
    # kopf's peering CRDs: not ours
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [SMARTHOST_CRD_PATH.name, CRD_PATH.name]


@pytest.mark.parametrize("dockerfile", ["image/postfix/Dockerfile", "image/operator/Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_catch_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && apt-get install curl\n")
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_postfix_image_ships_the_scripts_the_deployment_runs() -> None:
    from mailrelay.render import sidecar
    from mailrelay.render.relay import DRAIN, PROBE

    dockerfile = (ROOT / "image/postfix/Dockerfile").read_text()
    for script, target in (
        ("entrypoint.sh", "/usr/local/bin/mailrelay-entrypoint"),
        ("probe.sh", PROBE),
        ("drain.sh", DRAIN),
        ("metrics.sh", sidecar.COMMAND),
        ("log.sh", sidecar.LOG_ECHO),
    ):
        # From the package's own scripts/ (what local mode runs), not a copy beside the Dockerfile.
        assert f"COPY --chmod=0755 operator/mailrelay/scripts/{script} {target}" in dockerfile
        assert (ROOT / "operator/mailrelay/scripts" / script).is_file()
    assert 'ENTRYPOINT ["/usr/local/bin/mailrelay-entrypoint"]' in dockerfile
    assert " prometheus-postfix-exporter" in dockerfile  # what metrics.sh runs


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_examples_validate(crd: dict[str, Any], example: str) -> None:
    validate_all(objects((ROOT / "examples" / example).read_text()), crd)


def test_upstream_shapes_are_current_everywhere_they_are_used() -> None:
    """The operator's pod_schema.json and values.schema.json: `make schemas`; the CRD takes its shapes from
    pod_schema.json (hack/crd), and test_generated.py checks it is current."""
    found = upstream_schemas.shapes()
    assert upstream_schemas.POD_SCHEMA.read_text() == upstream_schemas.dump_json(found), "run `make schemas`"
    [version] = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {k: v for k, v in spec["affinity"].items() if k != "description"} == found["affinity"]
    assert spec["topologySpreadConstraints"]["items"] == found["topologySpreadConstraint"]
    values_schema = upstream_schemas.VALUES_SCHEMA.read_text()
    assert upstream_schemas.update_values_schema(values_schema, found) == values_schema, "run `make schemas`"


def test_the_wheel_the_operator_image_installs_is_complete(tmp_path: Path) -> None:
    """image/operator/Dockerfile builds a wheel from the repository; it must carry the whole package."""
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("mailrelay_operator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "operator"
    modules = {p.relative_to(package).as_posix() for p in (package / "mailrelay").rglob("*.py")}
    assert modules <= names and "mailrelay/api/pod_schema.json" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mailrelay-operator = mailrelay.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
