"""Sender-rewrite rules: a POSIX ERE pattern and a replacement, checked so the rendered map line is safe.

A rule's pattern goes into Postfix's regexp map as `/^branch$|^branch$/` (each top-level branch
anchored on its own), which adds no group, so `$N` in the replacement and `\\N` back-references in
the pattern mean what the user wrote. The grammar (balanced parentheses outside escapes and bracket
expressions) keeps the pattern inside its anchors: `x)|(y` cannot close a group it did not open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailrelay.api import grammar, posix_regex
from mailrelay.api.checker import Checker

MAX_PATTERN_LENGTH = 512
# In a regexp-map result: $1 or ${1} inserts a group, $$ is a literal '$' (regexp_table(5)).
GROUP_REFERENCE = re.compile(r"\$(?:(\d+)|\{(\d+)\}|(\$))")


@dataclass(frozen=True)
class RewriteRule:
    pattern: str
    replacement: str

    @property
    def anchored(self) -> str:
        """The pattern as it goes between the map's slashes: every top-level branch anchored."""
        branches = grammar.pattern_branches(self.pattern)
        if branches is None:  # parse_rule refuses these; never render one
            raise ValueError(f"rewrite pattern {self.pattern!r} is not grammatical")
        return "|".join(f"^{branch}$" for branch in branches)


def _pattern_problem(pattern: str) -> str | None:
    problem = posix_regex.delimiter_problem(pattern)
    if problem:
        return problem
    branches = grammar.pattern_branches(pattern)
    if branches is None:
        return (
            f"parentheses must balance (outside [...] and \\-escapes) and nest at most "
            f"{grammar.MAX_GROUP_DEPTH} deep; write a literal parenthesis as \\( or \\)"
        )
    if any(not branch for branch in branches):
        return "must not have an empty alternative (a leading, trailing or doubled '|')"
    error = posix_regex.compile_problem("|".join(f"^{branch}$" for branch in branches))
    if error:
        return f"is not a valid POSIX extended regular expression: {error}"
    return None


def parse_rule(check: Checker, path: str, raw: Any) -> RewriteRule | None:
    rule = check.mapping(path, raw, {"pattern", "replacement"})
    if rule is None:
        return None
    for key in ("pattern", "replacement"):
        if key not in rule:
            check.fail(f"{path}.{key}", "is required")
    if "pattern" not in rule or "replacement" not in rule:
        return None
    pattern = check.token(
        f"{path}.pattern", rule["pattern"], "a pattern (use [[:space:]] to match white space)", MAX_PATTERN_LENGTH
    )
    replacement = check.token(f"{path}.replacement", rule["replacement"], "a replacement", MAX_PATTERN_LENGTH)
    problem = _pattern_problem(pattern) if pattern is not None else None
    if problem:
        check.fail(f"{path}.pattern", problem)
    if pattern is None or replacement is None or problem:
        return None
    if "$" in GROUP_REFERENCE.sub("", replacement):
        check.fail(f"{path}.replacement", "a '$' must start a group reference ($1 or ${1}); write '$$' for '$'")
        return None
    groups = posix_regex.group_count(pattern)
    for match in GROUP_REFERENCE.finditer(replacement):
        number = match.group(1) or match.group(2)
        if number is not None and not 1 <= int(number) <= groups:
            check.fail(f"{path}.replacement", f"refers to group ${number} but the pattern has {groups}")
            return None
    return RewriteRule(pattern=pattern, replacement=replacement)
