"""CHANGELOG.md (Keep a Changelog, kept by hand) and RELEASES (the commit of each release), as the release
tooling reads and bumps them: a section per version, newest first, under `## [Unreleased]`, and a link
reference per heading at the bottom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?[ \t]*$", re.MULTILINE)
LINK = re.compile(r"^\[(?P<name>[^\]]+)\]: (?P<url>\S+)[ \t]*$", re.MULTILINE)
UNRELEASED = "Unreleased"


@dataclass(frozen=True)
class Section:
    name: str  # a version, or Unreleased
    date: str | None
    body: str  # up to the next heading or the link references, stripped


def sections(text: str) -> list[Section]:
    headings = list(HEADING.finditer(text))
    links = LINK.search(text, headings[-1].end()) if headings else None
    found = []
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else (links.start() if links else len(text))
        found.append(Section(heading["name"], heading["date"], text[heading.end() : end].strip()))
    return found


def links(text: str) -> dict[str, str]:
    return {m["name"]: m["url"] for m in LINK.finditer(text)}


def problems(text: str, version: str) -> list[str]:
    """What keeps CHANGELOG.md from describing `version` as released; empty when it does."""
    found = sections(text)
    names = [s.name for s in found]
    wrong: list[str] = []
    if not names or names[0] != UNRELEASED:
        wrong.append("CHANGELOG.md: the first section must be `## [Unreleased]`")
    releases = [s for s in found if s.name != UNRELEASED]
    if not releases or releases[0].name != version:
        newest = releases[0].name if releases else "none"
        wrong.append(f"CHANGELOG.md: the newest release section is {newest}, not {version}: run `make bump`")
    else:
        if not releases[0].date:
            wrong.append(f"CHANGELOG.md: `## [{version}]` has no date (`## [{version}] - YYYY-MM-DD`)")
        if not re.search(r"^- ", releases[0].body, re.MULTILINE):
            wrong.append(f"CHANGELOG.md: the {version} section lists no change")
    missing = [name for name in names if name not in links(text)]
    if missing:
        wrong.append(f"CHANGELOG.md: no link reference for {', '.join(missing)}")
    return wrong


def bump(text: str, version: str, date: str) -> str:
    """Move what Unreleased lists into a new section for `version`, and point the links at its tag."""
    found = sections(text)
    if not found or found[0].name != UNRELEASED:
        raise ValueError("CHANGELOG.md has no `## [Unreleased]` section at the top")
    if not re.search(r"^- ", found[0].body, re.MULTILINE):
        raise ValueError("CHANGELOG.md: Unreleased lists no change, so there is nothing to release")
    if version in {s.name for s in found}:
        raise ValueError(f"CHANGELOG.md already has a section for {version}")
    known = links(text)
    match = re.fullmatch(r"(?P<base>\S+)/compare/v(?P<previous>\S+)\.\.\.HEAD", known.get(UNRELEASED, ""))
    if not match:
        raise ValueError("CHANGELOG.md: the [Unreleased] link must be <repository>/compare/v<previous>...HEAD")
    base, previous = match["base"], match["previous"]
    heading = HEADING.search(text)
    assert heading is not None
    text = text[: heading.end()] + f"\n\n## [{version}] - {date}" + text[heading.end() :]
    text = LINK.sub(
        lambda m: (
            f"[{UNRELEASED}]: {base}/compare/v{version}...HEAD\n[{version}]: {base}/compare/v{previous}...v{version}"
            if m["name"] == UNRELEASED
            else m.group(0)
        ),
        text,
    )
    return text


def notes(text: str, version: str) -> str:
    """The section's body: the release notes."""
    for section in sections(text):
        if section.name == version:
            return section.body + "\n"
    raise ValueError(f"CHANGELOG.md has no section for {version}")


def releases(path: Path) -> dict[str, str]:
    """RELEASES: version → the commit it was built from."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            if len(words) != 2 or not re.fullmatch(r"[0-9a-f]{40}", words[1]):
                raise ValueError(f"{path.name}: `{line}` is not `<version> <40-hex commit>`")
            found[words[0]] = words[1]
    return found
