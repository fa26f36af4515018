"""The developer tooling stays whole: `make help` lists every target, and the pre-commit hooks run
exactly the checks `make lint` runs (CI runs `make lint`; a hook only it lacks would never fail CI)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from support.paths import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()


def recipe(target: str) -> list[str]:
    """The command lines of a target's recipe."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match, f"no recipe for {target}"
    return [line.strip() for line in match.group(1).splitlines()]


def test_make_help_lists_every_target_with_a_line_of_its_own() -> None:
    declared = re.search(r"^\.PHONY: (.*)$", MAKEFILE, re.M)
    assert declared
    phony = set(declared.group(1).split())
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    described = {line.split()[1]: line.split(None, 2)[2] for line in listed.splitlines()}
    assert set(described) == phony
    assert all(described.values())


def test_the_hooks_and_make_lint_run_the_same_tools() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"])  # nothing fetched from elsewhere
    hook_tools = {(hook["entry"].split()[0], *hook["entry"].split()[1:2]) for hook in hooks}
    lint_tools = {
        (words[0].replace("$(VENV)", ".venv"), *words[1:2]) for words in (line.split() for line in recipe("lint"))
    }
    # ruff format runs as `ruff format` in the hook and `ruff format --check` in CI: the same tool.
    assert {tool for tool, *_ in hook_tools} == {tool for tool, *_ in lint_tools}
    assert {args[0] for tool, *args in hook_tools if tool.endswith("ruff")} == {"check", "format"}
    assert {args[0] for tool, *args in lint_tools if tool.endswith("ruff")} == {"check", "format"}


def test_make_test_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    """tests/conftest.py marks the control plane's and the pods' tests with xdist_group; pytest-xdist
    has silently stopped honouring that before (pytest-dev/pytest-xdist#1386), so check it here, with
    the hook as tests/conftest.py has it, on the pytest and pytest-xdist this virtualenv has."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n\n"
        "@pytest.hookimpl(tryfirst=True)\n"
        "def pytest_collection_modifyitems(config, items):\n"
        "    for item in items:\n"
        "        if 'shared' in item.fixturenames:\n"
        "            item.add_marker(pytest.mark.xdist_group('shared'))\n\n\n"
        "@pytest.fixture\n"
        "def shared():\n"
        "    return None\n"
    )
    (tmp_path / "test_a.py").write_text(
        "import os\n\nimport pytest\n\n\n"
        "@pytest.mark.parametrize('n', range(12))\n"
        "def test_grouped(shared, n):\n"
        "    assert os.environ['PYTEST_XDIST_WORKER']\n\n\n"
        "@pytest.mark.parametrize('n', range(12))\n"
        "def test_free(n):\n"
        "    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = {line.split()[0] for line in result.stdout.splitlines() if "PASSED" in line and "test_grouped" in line}
    ran = [line for line in result.stdout.splitlines() if "PASSED" in line and "test_grouped" in line]
    assert len(ran) == 12 and len(workers) == 1, "\n".join(ran)
