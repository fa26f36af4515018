"""Whatever file a user gives `-f`, the answer is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.samples import relay_object

VALID = yaml.safe_dump(relay_object({"mailFromFQDN": "a.example.com"}))

BAD_FILES: dict[str, tuple[bytes, str]] = {
    "metadata null": (
        VALID.replace("metadata:", "metadata: null\nx_metadata:").encode(),
        "metadata: must be an object with a name, got null",
    ),
    "metadata a string": (
        b"apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: hello\nspec: {mailFromFQDN: a.example.com}\n",
        "metadata: must be an object with a name",
    ),
    "binary": (bytes(range(256)) * 4, "not UTF-8 text"),
    "utf-16": (VALID.encode("utf-16"), "not UTF-8 text"),
    "nul bytes": (VALID.encode() + b"\x00", "contains NUL bytes"),
    "deep nesting": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "deep nesting in spec": (
        b"apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: {name: r}\nspec: "
        + b"[" * 5000
        + b"]" * 5000
        + b"\n",
        "nested too deeply",
    ),
    "duplicate keys": (
        b"apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: {name: r}\n"
        b"spec:\n  mailFromFQDN: a.example.com\n  mailFromFQDN: b.example.com\n",
        "found duplicate key 'mailFromFQDN'",
    ),
    "duplicate top-level keys": (
        VALID.encode() + b"spec: {mailFromFQDN: b.example.com}\n",
        "found duplicate key 'spec'",
    ),
    "not yaml": (b"spec: [unclosed\n", "not valid YAML"),
    "a list": (b"- 1\n- 2\n", "must be a MailRelay object, got a list"),
}


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, command: str, content: bytes, message: str) -> None:
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", command, "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_input_on_stdin_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "validate", "-f", "-"],
        input=b"\xff\xfe\x00",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2 and b"not UTF-8 text" in result.stderr and b"Traceback" not in result.stderr
