"""The release version: pyproject.toml's `[project] version`, and every file that repeats it.

`make generate` writes the version into each site below (the operator's `__version__`, the chart's
version, appVersion and image annotations, the default Postfix image, the kustomize base's images, the
README's install commands), so they never drift; tests/test_generated.py fails when one is stale and
`make release` refuses to publish. Each site says how many times its pattern must match, so a site
whose text was reworded fails loudly instead of keeping an old version.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

# SemVer without build metadata (an image tag cannot hold `+`); prereleases map onto PEP 440 (0.2.0rc1).
VERSION = re.compile(r"\d+\.\d+\.\d+(?:-(?:alpha|beta|rc)\.\d+)?")
CHART = "manifests/helm/mailrelay-operator"
IMAGES = r"ghcr\.io/mailrelay-dev/(?:mailrelay-operator|postfix)"


@dataclass(frozen=True)
class Site:
    path: str
    pattern: str  # a regex with one group, `v`, around the version
    count: int  # how many times it must match


SITES = (
    Site("operator/mailrelay/version.py", r'^__version__ = "(?P<v>[^"]*)"$', 1),
    Site(f"{CHART}/Chart.yaml", r"^version: (?P<v>\S*)$", 1),
    Site(f"{CHART}/Chart.yaml", r'^appVersion: "(?P<v>[^"]*)"$', 1),
    Site(f"{CHART}/Chart.yaml", rf"image: {IMAGES}:(?P<v>\S*)$", 2),
    Site(f"{CHART}/values.yaml", rf"^postfixImage: {IMAGES}:(?P<v>\S*)$", 1),
    Site("manifests/base/deployment.yaml", rf"(?:image|value): {IMAGES}:(?P<v>\S*)$", 2),
    Site("README.md", rf"{IMAGES}:(?P<v>[\w.-]+)", 4),
    Site("README.md", r"--version (?P<v>\d[\w.-]*)", 3),
    Site("README.md", r"\?ref=v(?P<v>\d[\w.-]*)", 1),
    Site("README.md", r"^VERSION=(?P<v>\S+) ", 1),
    Site("examples/platform.yaml", r"image: registry\.example\.com/mirror/postfix:(?P<v>\S*)$", 1),
)


class VersionError(ValueError):
    """A version or a version site is not what it must be; the message says which."""


def check_version(version: str) -> str:
    if not VERSION.fullmatch(version):
        raise VersionError(f"{version!r} is not a release version (x.y.z, or x.y.z-rc.N, -alpha.N, -beta.N)")
    return version


def project_version(root: Path) -> str:
    """pyproject.toml's version: the one source."""
    with (root / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return check_version(version)


def stamp(text: str, site: Site, version: str) -> str:
    """The text with the site's version replaced; a site matching too few or too many times is an error."""
    pattern = re.compile(site.pattern, re.MULTILINE)
    found = len(pattern.findall(text))
    if found != site.count:
        raise VersionError(f"{site.path}: /{site.pattern}/ matches {found} times, not {site.count}")
    return pattern.sub(
        lambda m: m.group(0)[: m.start("v") - m.start()] + version + m.group(0)[m.end("v") - m.start() :], text
    )


def stamped(root: Path, version: str | None = None) -> dict[str, str]:
    """Path → its content with every site at `version` (default: the project's version)."""
    version = check_version(version) if version else project_version(root)
    texts: dict[str, str] = {}
    for site in SITES:
        text = texts.get(site.path)
        if text is None:
            text = (root / site.path).read_text()
        texts[site.path] = stamp(text, site, version)
    return texts


def set_version(root: Path, version: str) -> None:
    """Write `version` into pyproject.toml and every site (what `make bump` does before the changelog)."""
    check_version(version)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    new, count = re.subn(r'^version = "[^"]*"$', f'version = "{version}"', text, count=1, flags=re.MULTILINE)
    if not count:
        raise VersionError('pyproject.toml has no `version = "..."` line')
    pyproject.write_text(new)
    for path, content in stamped(root, version).items():
        (root / path).write_text(content)
