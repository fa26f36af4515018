"""One version source (pyproject.toml), written everywhere by `make generate` and `make bump`; the changelog
and RELEASES as the release reads them; `hack/release.py check`, which `make release` runs first, refusing
every way a tree can disagree with the version it is released as.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import changelog
import versions
from support.paths import CHART, ROOT
from support.releasekit import commit, committed_copy, git, prepare_release
from support.tools import objects, run

RELEASE = ROOT / "hack" / "release.py"
NEXT = "9.8.7"


def release(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The tree's own hack/release.py, as `make` in that tree runs it."""
    command = [sys.executable, str(tree / "hack" / "release.py"), *args]
    return subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def bumped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of this checkout, bumped to NEXT with `release.py bump` and committed again."""
    tree = committed_copy(tmp_path_factory.mktemp("bumped"))
    prepare_release(tree, NEXT)
    return tree


def clone(bumped: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(bumped), str(target)], check=True)
    return target


def test_the_checkout_agrees_with_its_version() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert versions.project_version(ROOT) == version
    assert versions.stamped(ROOT) == {site.path: (ROOT / site.path).read_text() for site in versions.SITES}


def test_a_bumped_tree_ships_the_new_version_in_every_artifact(bumped: Path, tools: Path) -> None:
    """What users get from the bumped tree: the chart, its rendered Deployment, the kustomize base, the
    package's __version__, the README's commands; nothing keeps the old version but the changelog."""
    old = versions.project_version(ROOT)
    chart = yaml.safe_load(run(tools, "helm", "show", "chart", str(bumped / "manifests/helm/mailrelay-operator")))
    assert (chart["version"], chart["appVersion"]) == (NEXT, NEXT)
    rendered = objects(run(tools, "helm", "template", "mr", str(bumped / "manifests/helm/mailrelay-operator")))
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == NEXT
    for kustomized in (rendered, objects(run(tools, "kubectl", "kustomize", str(bumped / "manifests/cluster-wide")))):
        [container] = next(d for d in kustomized if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["image"] == f"ghcr.io/mailrelay-dev/mailrelay-operator:{NEXT}"
        assert env["MAILRELAY_POSTFIX_IMAGE"] == f"ghcr.io/mailrelay-dev/postfix:{NEXT}"
    namespace: dict[str, Any] = {}
    exec((bumped / "operator/mailrelay/version.py").read_text(), namespace)
    assert namespace["__version__"] == NEXT
    readme = (bumped / "README.md").read_text()
    assert f"--version {NEXT}" in readme and f"?ref=v{NEXT}" in readme and f"--version {old}" not in readme
    assert f"postfix:{NEXT}" in (bumped / CHART.relative_to(ROOT) / "README.md").read_text()
    grep = ["git", "-C", str(bumped), "grep", "-l", "-F", f":{old}", "--", ":!CHANGELOG.md", ":!tests", ":!bench"]
    stale = subprocess.run(grep, capture_output=True, text=True, check=False).stdout
    assert stale == "", f"files still naming {old}: {stale}"


def test_bump_moves_unreleased_into_the_new_section(bumped: Path) -> None:
    text = (bumped / "CHANGELOG.md").read_text()
    before = {s.name: s for s in changelog.sections((ROOT / "CHANGELOG.md").read_text())}
    after = {s.name: s for s in changelog.sections(text)}
    assert list(after)[:3] == ["Unreleased", NEXT, *list(before)[1:2]]
    assert after["Unreleased"].body == "" and after[NEXT].date == "2030-01-02"
    assert after[NEXT].body == (before["Unreleased"].body or "### Added\n\n- A test.")
    links = changelog.links(text)
    assert links["Unreleased"].endswith(f"/compare/v{NEXT}...HEAD")
    assert links[NEXT].endswith(f"/compare/v{versions.project_version(ROOT)}...v{NEXT}")
    assert changelog.notes(text, NEXT) == after[NEXT].body + "\n"


def test_bump_refuses_when_nothing_is_unreleased_and_changes_nothing(bumped: Path, tmp_path: Path) -> None:
    tree = clone(bumped, tmp_path / "tree")
    done = release(tree, "bump", "9.9.0")
    assert done.returncode == 1 and "Unreleased lists no change" in done.stderr
    assert git(tree, "status", "--porcelain") == ""


def test_check_passes_on_a_bumped_and_committed_tree(bumped: Path) -> None:
    done = release(bumped, "check", NEXT)
    assert done.returncode == 0, done.stderr
    assert "agree" in done.stderr


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


BREAKAGES = {
    # name: (what the maintainer did, committed?, what check must say)
    "another version": (lambda tree: None, True, "9.8.8", ["pyproject.toml says 9.8.7, not 9.8.8", "not 9.8.8"]),
    "a stale copy": (
        lambda tree: _edit(tree / "manifests/helm/mailrelay-operator/values.yaml", f"postfix:{NEXT}", "postfix:9.8.6"),
        True,
        NEXT,
        ["values.yaml is stale: run `make generate`"],
    ),
    "a reworded site": (
        lambda tree: _edit(tree / "manifests/base/deployment.yaml", "image: ghcr.io", "image:  ghcr.io"),
        True,
        NEXT,
        ["manifests/base/deployment.yaml", "matches 1 times, not 2"],
    ),
    "an undated section": (
        lambda tree: _edit(tree / "CHANGELOG.md", f"## [{NEXT}] - 2030-01-02", f"## [{NEXT}]"),
        True,
        NEXT,
        [f"`## [{NEXT}]` has no date"],
    ),
    "uncommitted changes": (
        lambda tree: _edit(tree / "README.md", "## Install", "## Installing"),
        False,
        NEXT,
        ["uncommitted changes"],
    ),
    "a release listed at another commit": (
        lambda tree: (tree / "RELEASES").write_text((tree / "RELEASES").read_text() + f"{NEXT} {'0' * 40}\n"),
        True,
        NEXT,
        [f"{NEXT} was released from {'0' * 40}"],
    ),
    "the tag elsewhere": (
        lambda tree: git(tree, "tag", f"v{NEXT}", "HEAD~1"),
        False,
        NEXT,
        [f"the tag v{NEXT} points at"],
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_check_refuses_a_tree_that_does_not_agree(bumped: Path, tmp_path: Path, breakage: str) -> None:
    change, committed, version, messages = BREAKAGES[breakage]
    tree = clone(bumped, tmp_path / "tree")
    change(tree)
    if committed:
        commit(tree, breakage)
    done = release(tree, "check", version)
    assert done.returncode == 1, done.stderr
    for message in messages:
        assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_changelog_and_releases_describe_the_history() -> None:
    """Every release in RELEASES has a dated section, and its commit (in this clone's history: CI clones
    have all of it, tags or not) carries that version in its pyproject.toml."""
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = {s.name: s for s in changelog.sections(text)}
    assert next(iter(sections)) == "Unreleased" and set(sections) <= set(changelog.links(text))
    released = changelog.releases(ROOT / "RELEASES")
    assert released, "RELEASES lists no release"
    for version, commit_id in released.items():
        assert sections[version].date, version
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit_id}:pyproject.toml"], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, f"{commit_id} ({version}) is not in this clone's history: {shown.stderr}"
        assert tomllib.loads(shown.stdout)["project"]["version"] == version


def test_a_site_that_lost_its_pattern_is_an_error_not_a_silent_skip() -> None:
    site = versions.Site("x", r"^version: (?P<v>\S+)$", 1)
    assert versions.stamp("version: 1.0.0\n", site, "2.0.0") == "version: 2.0.0\n"
    with pytest.raises(versions.VersionError, match="matches 0 times, not 1"):
        versions.stamp("release: 1.0.0\n", site, "2.0.0")
    for bad in ("1.2", "v1.2.3", "1.2.3+build", "1.2.3-dev"):
        with pytest.raises(versions.VersionError, match="not a release version"):
            versions.check_version(bad)
