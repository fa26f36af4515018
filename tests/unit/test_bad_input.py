"""Whatever file a user gives `-f`, the answer is one line on stderr and exit 2, never a traceback.

In this process (`cli.main`); tests/packaging/test_entry_point.py runs the command as installed.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from mailrelay.cli import main

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


def answer(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int | str | None, str, str]:
    """`mailrelay-operator <argv>` in this process: its exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: bytes, message: str
) -> None:
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    code, out, err = answer(capsys, [command, "-f", str(path)])  # any other exception fails the test
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_bad_input_on_stdin_too(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe\x00")))
    code, _, err = answer(capsys, ["validate", "-f", "-"])
    assert code == 2 and "not UTF-8 text" in err and "Traceback" not in err
