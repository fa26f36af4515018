"""The grammar of every string that reaches a Postfix file or a pod spec, as regular expressions.

The same expressions are in the CRD (as `pattern` or CEL `matches`), so the API server and the
operator refuse exactly the same strings; tests compare the CRD's copies with these. They are
written for RE2 (the API server's engine) and Python alike: no backreferences, no lookaround, and
always used whole-string (`fullmatch` here, `^...$` in the CRD), never with a trailing-newline `$`.
"""

from __future__ import annotations

import ipaddress
import re

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123 label: namespaces, the parts of a DNS name
HOSTNAME = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
# A Kubernetes object name or key prefix (DNS-1123 subdomain as apimachinery checks it): labels
# unbounded, the whole at most 253 characters (checked by the caller).
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# The last label of a name is never all digits (RFC 3696 2): `10.0.0.1` is an address, not a name.
ALPHA_TOP_LABEL = r"(^|\.)[-a-z0-9]*[a-z][-a-z0-9]*$"
IPV4 = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# An IPv6 literal: hex digits, colons and an optional dotted tail; no %scope, no brackets.
IPV6_CHARS = r"[0-9a-f:.]*:[0-9a-f:.]*"
PRINTABLE = r"[!-~]+"  # printable ASCII without the space: no control character, no line break

# A rewrite pattern is a POSIX ERE whose parentheses balance outside bracket expressions and
# escapes, nested at most MAX_GROUP_DEPTH deep: then `^...$` around each top-level branch keeps the
# whole pattern anchored and a `)` can never close a group the renderer opened.
#
# It is also bounded in cost, as Postfix runs it with glibc's matcher on every sender address:
# - no back-reference: `\1` to `\9` make POSIX matching exponential (`(.*)(.*)(.*)(.*)\4\3\2\1@x`
#   took 3.4 s per address);
# - `+`, `{m}` and `{m,}` (m from 0 to MAX_REPEAT) only right after one character, `.`, an escape
#   or a bracket expression: glibc compiles them by copying what they follow, so after a group or
#   another repetition they multiply (`(.{0,255}){0,255}` took 22 GB to compile);
# - no interval with an upper bound (`{m,n}`) and at most MAX_OPTIONAL `?`: each optional copy
#   makes the automaton build a new state per character (50 rules of `.{0,9}` chains cost 9 s per
#   message);
# - a group may be optional (`(x)?`) but not repeated (`(x)*`): glibc's submatch code loops forever
#   on some repeated groups whose alternatives can match nothing (`(b*|a|c*)*` against "a"), so no
#   loop of the automaton may pass a group's boundary. Characters repeat; groups do not.
# Then the automaton grows a few states per pattern character, every loop is a one-character loop,
# and matching is linear in the address. A literal brace is written `\{` or `\}`.
MAX_GROUP_DEPTH = 4
MAX_REPEAT = 9
MAX_OPTIONAL = 8
OPTIONAL_LIMIT = rf"[^?]*(\?[^?]*){{0,{MAX_OPTIONAL}}}"  # at most MAX_OPTIONAL '?' in the whole pattern
BRACKET = r"\[\^?\]?(\[:[a-z]+:\]|\[=[^=]=\]|\[\.[^.]\.\]|[^\]])*\]"
_CHAR = rf"[^()\[\\{{}}*+?|]|\\[^1-9]|{BRACKET}"  # one character: literal, `.`, escape, bracket
_REPEAT = r"\+|\{[0-9],?\}"
_TOKEN = rf"({_CHAR})({_REPEAT})?[*?]*|\|"  # a character with its repetitions, or an alternation bar


def _nested(depth: int) -> str:
    body = f"({_TOKEN})*"
    for _ in range(depth):
        body = rf"({_TOKEN}|\({body}\)\??)*"
    return body


RULE_PATTERN = _nested(MAX_GROUP_DEPTH)

# Kubernetes resource quantities (apimachinery's resource.Quantity), without a sign: requests and
# limits must not be negative.
QUANTITY = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
# Label values and qualified names (keys of nodeSelector and of tolerations).
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"
QUALIFIED_NAME = rf"({HOSTNAME}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"
# A label key as apimachinery checks it: an optional DNS-subdomain prefix and "/", then a name (the
# prefix's 253-character bound is a separate check).
LABEL_KEY = rf"({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"


def full(expression: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whole-string match (RE2 semantics: `$` never matches before a trailing newline)."""
    return re.fullmatch(expression, text, re.IGNORECASE if ignore_case else 0) is not None


def is_hostname(text: str) -> bool:
    """An RFC 1123 name whose last label has a letter, at most 253 characters, any case."""
    return (
        len(text) <= 253
        and full(HOSTNAME, text, ignore_case=True)
        and re.search(ALPHA_TOP_LABEL, text, re.IGNORECASE) is not None
    )


def ip_literal(text: str) -> str | None:
    """The canonical form of an IPv4 or IPv6 address without zone, or None."""
    if not (full(IPV4, text) or full(IPV6_CHARS, text, ignore_case=True)):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def pattern_branches(pattern: str) -> list[str] | None:
    """Split a grammatical rule pattern at its top-level `|`; None when it is not grammatical."""
    if not full(RULE_PATTERN, pattern):
        return None
    branches, depth, start, index = [], 0, 0, 0
    bracket = re.compile(BRACKET)
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            match = bracket.match(pattern, index)
            assert match is not None  # the grammar guarantees a whole bracket expression here
            index = match.end()
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(pattern[start:index])
            start = index + 1
        index += 1
    branches.append(pattern[start:])
    return branches
