"""Sender-rewrite rules: a POSIX ERE pattern and a replacement, checked so the rendered map line is safe
and the pattern cheap to run.

A rule's pattern goes into Postfix's regexp map as `/^branch$|^branch$/` (each top-level branch
anchored on its own), which adds no group, so `$N` in the replacement means what the user wrote. The
grammar (balanced parentheses outside escapes and bracket expressions) keeps the pattern inside its
anchors: `x)|(y` cannot close a group it did not open. It also refuses what makes glibc's matcher
slow or loop (grammar.py says why): back-references, `+` or `{m,n}` after anything but one
character, and a repeated group.
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


_INTERVAL = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")


_GROUP_REPEAT = (
    "must not repeat a group (at position {index}): a group may only be optional, (x)?, as glibc's matcher can "
    "loop forever on a repeated one; repeat characters instead, e.g. [a-z.]* for ([a-z]+\\.)*"
)


def _misplaced_repeat(char: str, index: int, previous: str) -> str | None:
    """A repetition (`+`, `{`, `*`, `?`) with nothing to repeat, or after a group (only `(x)?` is allowed)."""
    if previous in ("group", "optional") and not (char == "?" and previous == "group"):
        return _GROUP_REPEAT.format(index=index)
    if not previous:
        return f"has nothing to repeat before the {char!r} at position {index}; write a literal one as \\{char}"
    return None


def _repeat_problem(char: str, interval: re.Match[str] | None, index: int, previous: str) -> str | None:
    """What is wrong with a `+` or an interval at `index`, after a `previous` token (see _cost_problem)."""
    if char == "{" and interval is None:
        return (
            f"has a '{{' that starts no interval {{m}}, {{m,}} or {{m,n}} (at position {index}); "
            "write a literal brace as \\{"
        )
    if interval is not None and any(n and int(n) > grammar.MAX_REPEAT for n in (interval.group(1), interval.group(3))):
        return (
            f"repeats up to {grammar.MAX_REPEAT} times at most in an interval, got {interval.group(0)} "
            f"(at position {index})"
        )
    if interval is not None and interval.group(3):
        return (
            f"must not give an interval an upper bound, got {interval.group(0)} (at position {index}): "
            "write {m} or {m,}; each optional copy costs glibc's matcher a state per character"
        )
    if previous != "char":
        what = char if interval is None else interval.group(0)
        return (
            f"must put {what} (at position {index}) right after one character, '.', an escape or [...], "
            "not after another repetition"
        )
    return None


def _cost_problem(pattern: str) -> str | None:
    """Name the first construct the grammar refuses for its cost, and how to write it instead."""
    # previous: "char" (a character, its +/{m,n} allowed next), "repeated" (a character after *, ?, +
    # or {m,n}: * and ? may follow), "group" (a closed group: only ? may follow), "optional" (after
    # (x)?: nothing may), "" (start, '(' or '|': nothing to repeat)
    index, previous = 0, ""
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern[index + 1 : index + 2] in tuple("123456789"):
                return (
                    f"must not use the back-reference {pattern[index : index + 2]} (at position {index}): "
                    "back-references make matching exponential in the address length"
                )
            index, previous = index + 2, "char"
            continue
        if char == "[":
            match = re.compile(grammar.BRACKET).match(pattern, index)
            if match is None:
                return None  # an unclosed bracket: the grammar's message says it
            index, previous = match.end(), "char"
            continue
        if char == "}":
            return f"has a '}}' that closes no interval (at position {index}); write a literal brace as \\}}"
        if char in "+{*?" and (problem := _misplaced_repeat(char, index, previous)) is not None:
            return problem
        if char in "+{":
            interval = _INTERVAL.match(pattern, index) if char == "{" else None
            problem = _repeat_problem(char, interval, index, previous)
            if problem is not None:
                return problem
            index, previous = (index + 1 if interval is None else interval.end()), "repeated"
            continue
        if char in "*?":
            previous = "optional" if previous == "group" else "repeated"
        else:
            previous = {"(": "", "|": "", ")": "group"}.get(char, "char")
        index += 1
    return None


def _optional_problem(pattern: str) -> str | None:
    if grammar.full(grammar.OPTIONAL_LIMIT, pattern):
        return None
    return (
        f"must have at most {grammar.MAX_OPTIONAL} '?' (optional parts, a literal '?' included), got "
        f"{pattern.count('?')}: long runs of optional parts cost glibc's matcher a state per character"
    )


def _pattern_problem(pattern: str) -> str | None:
    problem = posix_regex.delimiter_problem(pattern) or _cost_problem(pattern) or _optional_problem(pattern)
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
