"""User YAML that costs more to read than its size says: alias bombs, and values too big to quote.

Issue 23: a 692-byte file given with `-f` expanded to 10^9 elements (17 s, 1.6 GB, a MemoryError
traceback). Aliases are now refused at load, before anything walks or prints the document, and no
message quotes more than a bounded prefix of a user value, whatever its size or shape.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api.checker import QUOTE_LIMIT, quote
from mailrelay.api.spec import SpecError, parse

from support.samples import relay_object


def billion_laughs() -> bytes:
    """Nine levels of ten aliases: 10^9 strings once expanded, in a MailRelay's apiVersion, which the
    validation used to quote whole; padded with a comment to the 692 bytes of the issue's file."""
    lines, previous = [], None
    for name in "abcdefghi":
        item = '"lol"' if previous is None else f"*{previous}"
        lines.append(f"  {name}: &{name} [{', '.join([item] * 10)}]\n")
        previous = name
    text = "kind: MailRelay\nmetadata: {name: relay, namespace: apps}\nx-lol:\n" + "".join(lines)
    text += "apiVersion: *i\nspec: {mailFromFQDN: apps.example.com}\n"
    comment = "# 10^9 elements once the aliases are expanded\n"
    text = comment + text
    return (text + "#" * (692 - len(text) - 1) + "\n").encode()


def run(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> tuple[int, str, str, int]:
    """Run the CLI; (exit status, stdout, stderr, this child's peak RSS in MiB, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailrelay", *args],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            cwd=cwd,
            # a bomb that got through would fail here, not take the machine's memory
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)),
        )
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
        killer = threading.Timer(60, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return process.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss // 1024


def test_the_document_is_the_issues_size_and_a_real_bomb() -> None:
    bomb = billion_laughs()
    assert len(bomb) == 692
    import yaml  # the stock loader expands it (lazily here, as a shared graph): that is the danger

    document = yaml.safe_load(bomb)
    level, count = document["apiVersion"], 1
    while isinstance(level, list):
        count, level = count * len(level), level[0]
    assert count == 10**9


@pytest.mark.parametrize("command", ["validate", "render", "local"])
def test_an_alias_bomb_is_refused_at_once_with_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_bytes(billion_laughs())
    workdir = tmp_path / "workdir"
    extra = ["--workdir", str(workdir)] if command == "local" else []
    status, out, err, peak_mib = run(command, "-f", str(path), *extra)
    assert status == 2 and out == "", err
    [line] = err.splitlines()
    assert line == (
        f"{path}: line 6, column 10: the alias '*a' is not accepted: "
        "YAML aliases are refused in MailRelay files (write the value out)"
    )
    assert peak_mib < 200, peak_mib  # the issue's run took 1.6 GB
    assert not workdir.exists()  # nothing written, nothing created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


def test_a_merge_key_is_an_alias_too() -> None:
    text = (
        b"x: &base {mailFromFQDN: apps.example.com}\n"
        b"apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: {name: r}\nspec:\n  <<: *base\n"
    )
    status, _, err, _ = run("validate", "-f", "-", stdin=text)
    assert status == 2 and "the alias '*base' is not accepted" in err and len(err.splitlines()) == 1


def test_an_anchor_without_alias_is_harmless() -> None:
    text = (
        b"apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: {name: r, namespace: a}\n"
        b"spec: &s {mailFromFQDN: apps.example.com}\n"
    )
    status, _, err, _ = run("validate", "-f", "-", stdin=text)
    assert status == 0, err


def shared_bomb(levels: int = 9) -> list[Any]:
    """10^levels elements as a graph of shared lists: what an alias bomb becomes inside Python."""
    value: list[Any] = ["lol"] * 10
    for _ in range(levels - 1):
        value = [value] * 10
    return value


@pytest.mark.parametrize(
    "field",
    ["apiVersion", "kind", "metadata.name", "metadata.namespace", "spec.relay.tls", "spec.dkim.keyType"],
)
@pytest.mark.parametrize(
    "value", [shared_bomb(), "x" * 4_000_000, {"k" * 1000: shared_bomb()}], ids=["graph", "4MB", "map"]
)
def test_no_message_quotes_a_whole_value(field: str, value: Any) -> None:
    obj = relay_object({"mailFromFQDN": "apps.example.com", "relay": {"host": "h.example"}, "dkim": {}})
    *parents, last = field.split(".")
    node = obj
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(SpecError) as refused:
        parse(obj)
    for problem in refused.value.problems:
        assert len(problem) < 400, problem[:500]
    assert any(
        field.rsplit(".", 1)[-1] in problem or "apiVersion/kind" in problem for problem in refused.value.problems
    )


def test_quote_is_bounded_and_readable() -> None:
    assert quote("smtp.example.net\n") == "'smtp.example.net\\n'"
    assert len(quote("x" * 10_000_000)) <= QUOTE_LIMIT + 8
    assert len(quote(shared_bomb())) <= QUOTE_LIMIT + 8
    assert quote({"a": [1, 2]}) == "{'a': [1, 2]}"
