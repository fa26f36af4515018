"""No rewrite pattern the operator accepts makes glibc's matcher hang, checked with glibc itself.

glibc's regexec never returns on some patterns (issue 23, found by fuzzing: `(b*|a|c*)*` against
"a", when the submatches a `$1` asks for are wanted), and its maintainers advise against untrusted
patterns. The grammar (api/grammar.py) keeps every loop a one-character loop. Here random patterns
the operator accepts, built from the constructs that matter (alternations, empty and nullable
branches, optional groups, nested groups, repetitions), run through regcomp/regexec exactly as
Postfix's regexp tables call them, against short and 254-character addresses, in a child process
that is killed if it stops making progress. The control shows the watchdog catches a real hang.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

from mailrelay.api import grammar
from mailrelay.api.rules import RewriteRule
from mailrelay.api.spec import SpecError, parse

from support.samples import relay_object

# Compiled as Postfix's dict_regexp does (REG_EXTENDED | REG_ICASE) and matched with room for
# submatches, which is the path that loops; one line of output per pattern, before it runs.
CHILD = r"""
import ctypes, json, sys
libc = ctypes.CDLL("libc.so.6")
libc.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
libc.regexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int]
addresses = ["", "a", "b", "aa", "ab", "a@b", "aab@b.b", "a" * 254, ("ab@." * 64)[:254]]
for index, pattern in enumerate(json.load(sys.stdin)):
    print(index, flush=True)
    compiled = ctypes.create_string_buffer(256)
    assert libc.regcomp(compiled, pattern.encode(), 3) == 0, pattern
    matches = ctypes.create_string_buffer(16 * 10)
    for address in addresses:
        libc.regexec(compiled, address.encode(), 10, matches, 0)
print("done", flush=True)
"""
PIECES = ["a", "b", ".", "[ab]", "@", "\\."]
REPEATS = ["", "", "", "*", "*", "?", "+", "{1,}", "{0}", "{2}", "{9,}", "{0,}"]


def body(rnd: random.Random, depth: int, budget: int) -> str:
    parts = []
    while budget > 0 and rnd.random() < 0.85:
        roll = rnd.random()
        if roll < 0.35 and depth < grammar.MAX_GROUP_DEPTH:
            part = f"({body(rnd, depth + 1, budget // 2)}){rnd.choice(['', '', '?'])}"
        elif roll < 0.5:
            part = "|"
        else:
            part = rnd.choice(PIECES) + rnd.choice(REPEATS)
        parts.append(part)
        budget -= len(part)
    return "".join(parts)


def accepted(pattern: str) -> RewriteRule | None:
    spec = {"mailFromFQDN": "a.example", "rewrite": {"rules": [{"pattern": pattern, "replacement": "x@a.example"}]}}
    try:
        return parse(relay_object(spec)).spec.rules[0]
    except SpecError:
        return None


def hung(patterns: list[str], seconds: float) -> str | None:
    """The pattern glibc was still matching when `seconds` ran out, or None if all finished."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate(json.dumps(patterns), timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
        return patterns[int(out.split()[-1])]
    assert out.split()[-1] == "done", out
    return None


def test_no_accepted_pattern_hangs_glibc() -> None:
    rnd = random.Random(23)
    patterns: list[str] = []
    while len(patterns) < 400:
        rule = accepted(body(rnd, 0, rnd.choice([10, 30, 80, 200, 400])))
        if rule is not None:
            patterns.append(rule.anchored)  # exactly what goes between the map's slashes
    assert hung(patterns, seconds=60) is None


def test_the_watchdog_catches_a_pattern_glibc_never_finishes() -> None:
    """The control: the first grammar accepted this one (issue 23's fuzzing), and glibc loops on it."""
    assert accepted("(b*|a|c*)*@x") is None
    assert hung(["^a$", "^(b*|a|c*)*$", "^b$"], seconds=5) == "^(b*|a|c*)*$"
