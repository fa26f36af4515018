"""The GitHub Actions release workflow: valid for actionlint (built from its pinned Go module), and no glue
of its own: every step runs a `make` target the release tests run, or is one of the few listed below.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from support.paths import ROOT

pytestmark = pytest.mark.release

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# The targets tests/pod/test_release.py runs as the workflow does.
TESTED_TARGETS = {"registry-login", "release", "release-notes"}
# What a step may run besides those targets, and why it cannot be a target of its own.
ALLOWED = {
    "apt-get update": "installs git and make, which `make` needs before it exists",
    'git config --global --add safe.directory "$GITHUB_WORKSPACE"': "the container's root reads the runner's checkout",
    'gh release create "$VERSION"': "GitHub's own API, not reachable from a test",
}


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    from gotools.build import ensure

    command = [str(ensure("actionlint")), "-no-color", "-shellcheck=", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_there_is_a_release_workflow() -> None:
    assert ROOT / ".github" / "workflows" / "release.yml" in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_pass_actionlint(workflow: Path) -> None:
    done = actionlint(workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    broken.write_text(text.replace("${{ github.ref_name }}", "${{ github.no_such_property }}"))
    done = actionlint(broken)
    assert done.returncode == 1 and "no_such_property" in done.stdout, done.stdout + done.stderr


def _targets() -> set[str]:
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony
    return set(phony.group(1).replace("\\\n", " ").split())


def test_every_step_is_a_tested_make_target_or_a_listed_exception() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow["on"]["push"]["tags"] == ["v*"]
    targets, used = _targets(), set()
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for line in filter(None, (step.get("run") or "").splitlines()):
                made = re.match(r"make (?:--no-print-directory )?([\w-]+)", line.strip())
                if made:
                    assert made.group(1) in targets, line
                    used.add(made.group(1))
                else:
                    assert any(line.strip().startswith(allowed) for allowed in ALLOWED), f"untested glue: {line}"
    assert used == TESTED_TARGETS
