"""Files written by `make generate` from one source: current, and granting what the source says.

The RBAC is checked as shipped: the objects `kubectl kustomize` and `helm template` produce, not
the files themselves, so an include or a patch that drops a rule is caught too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.api.names import ALL_NAMESPACES_RULES, LEADER_RULES, RELAY_RULES, Rule

import generate
from support.paths import CHART, ROOT
from support.tools import objects, run


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def expected(*groups: tuple[Rule, ...]) -> set[tuple[str, str, str]]:
    return grants([rule.as_dict() for group in groups for rule in group])


def by_scope(docs: list[dict[str, Any]]) -> dict[tuple[str, str | None], set[tuple[str, str, str]]]:
    """(kind, namespace) → what the roles of that kind in that namespace grant, if they are bound."""
    bound = {
        (d["roleRef"]["kind"], d["roleRef"]["name"], d["metadata"].get("namespace"))
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
    }
    scopes: dict[tuple[str, str | None], set[tuple[str, str, str]]] = {}
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            namespace = doc["metadata"].get("namespace")
            assert (doc["kind"], doc["metadata"]["name"], namespace) in bound, doc["metadata"]["name"]
            scopes.setdefault((doc["kind"], namespace), set()).update(grants(doc["rules"]))
    return scopes


def test_generated_files_are_current() -> None:
    assert generate.stale() == [], "run `make generate`"


def test_generate_check_reports_a_stale_file(tmp_path: Path) -> None:
    for name in (*generate.expected(), generate.CRD):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert generate.stale(tmp_path) == []
    rbac = tmp_path / "manifests/cluster-wide/rbac.yaml"
    rbac.write_text(rbac.read_text().replace("verbs: [get, create, update]", "verbs: [get, create]"))
    assert generate.stale(tmp_path) == ["manifests/cluster-wide/rbac.yaml"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variant", ["cluster-wide", "cluster-wide-ha", "namespaced"])
def test_kustomize_rbac_is_the_identity_rules(tools: Path, variant: str) -> None:
    docs = objects(run(tools, "kubectl", "kustomize", f"manifests/{variant}"))
    scopes = by_scope(docs)
    if variant == "namespaced":
        assert scopes == {("Role", "mailrelay-system"): expected(RELAY_RULES, LEADER_RULES)}
    else:
        assert scopes == {
            ("ClusterRole", None): expected(RELAY_RULES, ALL_NAMESPACES_RULES),
            ("Role", "mailrelay-system"): expected(LEADER_RULES),
        }


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={apps,billing}"]])
def test_chart_rbac_is_the_identity_rules(tools: Path, values: list[str]) -> None:
    docs = objects(run(tools, "helm", "template", "mr", str(CHART), "-n", "mailrelay-system", *values))
    scopes = by_scope(docs)
    if values:
        assert scopes == {
            ("Role", "mailrelay-system"): expected(LEADER_RULES),
            ("Role", "apps"): expected(RELAY_RULES),
            ("Role", "billing"): expected(RELAY_RULES),
        }
    else:
        assert scopes == {
            ("ClusterRole", None): expected(RELAY_RULES, ALL_NAMESPACES_RULES),
            ("Role", "mailrelay-system"): expected(LEADER_RULES),
        }


def test_chart_crd_is_the_crd() -> None:
    assert yaml.safe_load((CHART / "crds" / Path(generate.CRD).name).read_text()) == yaml.safe_load(
        (ROOT / generate.CRD).read_text()
    )
