"""`mailrelay-operator local`: one relay on this machine's Postfix, end to end, as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
import yaml

from mailrelay.api import dkim
from mailrelay.api.spec import parse
from mailrelay.local import runner as local

from support.samples import relay_object
from support.smtp_sink import Sink, free_port


def start_local(config: Path, workdir: Path, port: int, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailrelay", "local", "-f", str(config), "--port", str(port), "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MAILRELAY_LOCAL_STATE": str(state)},
    )


def send_when_up(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                msg = EmailMessage()
                msg["From"] = "root@6ba2d5764050"
                msg["To"] = "you@example.org"
                msg["Subject"] = "local mode"
                msg.set_content("hi\n")
                smtp.send_message(msg)
            return
        except OSError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "local mode did not start listening"
            time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it; Ctrl-C is the same path
    output, _ = process.communicate(timeout=30)
    return output


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """A private (0700) workdir, as a careful user makes one, and a state root for Postfix's tree."""
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-local-test-"))
    state = Path(tempfile.mkdtemp(prefix="mailrelay-local-state-"))
    state.chmod(0o755)
    yield workdir, state
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def test_local_mode_relays_and_rewrites(
    postfix_ready: None, sinks: list[Sink], tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    workdir, state = dirs
    sink = Sink().start()
    sinks.append(sink)
    relay = relay_object(
        {"mailFromFQDN": "local.example.com", "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"}},
        uid=None,
    )
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump(relay))
    port = free_port()
    process = start_local(config, workdir, port, state)
    try:
        send_when_up(process, port)
        [got] = sink.wait_for(1)
        assert got.mail_from == "root@local.example.com"
        assert got.header("From") == "root@local.example.com"
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert f"on 127.0.0.1:{port}, senders rewritten to @local.example.com" in output
    assert "from=<root@local.example.com>" in output  # the Postfix log is shown to the user
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700  # the user's directory keeps its mode
    pid_file = (workdir / "postfix-state").resolve() / "queue" / "pid" / "master.pid"
    assert pid_file.parent.parent.parent.parent == state
    assert (
        not pid_file.exists()
        or subprocess.run(["kill", "-0", pid_file.read_text().split()[0]], capture_output=True).returncode != 0
    )  # Postfix stopped


def test_a_second_instance_on_the_same_workdir_refuses(
    postfix_ready: None, sinks: list[Sink], tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    workdir, state = dirs
    sink = Sink().start()
    sinks.append(sink)
    config = tmp_path / "relay.yaml"
    config.write_text(
        yaml.safe_dump(
            relay_object(
                {"mailFromFQDN": "local.example.com", "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"}},
                uid=None,
            )
        )
    )
    port = free_port()
    first = start_local(config, workdir, port, state)
    try:
        send_when_up(first, port)
        second = start_local(config, workdir, free_port(), state)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        assert f"another mailrelay-operator local (pid {first.pid}) is using {workdir}" in output
        send_when_up(first, port)  # the first one still serves
        assert len(sink.wait_for(2)) == 2
    finally:
        stop(first)
    assert first.returncode == 0


def test_the_login_comes_from_a_secret_document_in_the_same_file(
    postfix_ready: None, sinks: list[Sink], tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    workdir, state = dirs
    sink = Sink(credentials=("relay-user", "s3cret pass")).start()
    sinks.append(sink)
    relay = relay_object(
        {
            "mailFromFQDN": "local.example.com",
            "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None", "authSecretRef": {"name": "smarthost"}},
        },
        uid=None,
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "smarthost"},
        "stringData": {"username": "relay-user", "password": "s3cret pass"},
    }
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump_all([relay, secret]))
    port = free_port()
    process = start_local(config, workdir, port, state)
    try:
        send_when_up(process, port)
        [got] = sink.wait_for(1)
        assert got.auth == ("relay-user", "s3cret pass")
    finally:
        output = stop(process)
    assert "s3cret" not in output
    assert stat.S_IMODE((workdir / "secret").stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "secret" / "password").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "documents", "message"),
    [
        (["--port", "70000"], None, "argument --port: must be from 1 to 65535, got 70000"),
        (["--port", "0"], None, "argument --port: must be from 1 to 65535, got 0"),
        (["--listen", "localhost\nx"], None, "is not an IP address"),
        ([], [], "names Secret smarthost, which is not in the file: add it as another document"),
        (
            [],
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "smarthost"},
                    "stringData": {"username": "a:b", "password": "p"},
                }
            ],
            "Secret smarthost: username must not contain ':'",
        ),
    ],
)
def test_local_mode_refuses_bad_arguments_before_starting(
    tmp_path: Path, args: list[str], documents: list[Any] | None, message: str
) -> None:
    relay = relay_object(
        {
            "mailFromFQDN": "local.example.com",
            "relay": {"host": "127.0.0.1", "port": 2525, "authSecretRef": {"name": "smarthost"}},
        },
        uid=None,
    )
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump_all([relay, *(documents or [])]))
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "local", "-f", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_local_mode_without_postfix_says_how_to_install(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda *args, **kwargs: None)
    relay = parse(relay_object({"mailFromFQDN": "a.example.com"}))
    assert local.run_local(relay, port=2525, listen="127.0.0.1", workdir=None) == 1
    err = capsys.readouterr().err
    assert "Postfix is not installed" in err and "apt-get install -y postfix" in err


def test_local_mode_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(relay_object({"mailFromFQDN": "nodot"})))
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "local", "-f", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "spec.mailFromFQDN" in result.stderr


@pytest.mark.parametrize("key_from", ["generated", "secret in the file"])
def test_local_mode_signs_and_writes_the_dns_record(
    postfix_ready: None, sinks: list[Sink], tmp_path: Path, dirs: tuple[Path, Path], key_from: str
) -> None:
    workdir, state = dirs
    sink = Sink().start()
    sinks.append(sink)
    spec: dict[str, Any] = {
        "mailFromFQDN": "local.example.com",
        "dkim": {"selector": "loc"},
        "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"},
    }
    documents = [relay_object(spec, uid=None)]
    given = dkim.generate("rsa", 2048)
    if key_from != "generated":
        spec["dkim"]["keySecretRef"] = {"name": "my-dkim"}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "my-dkim", "namespace": "apps"},
                "stringData": {"rsa.private": given.decode()},
            }
        )
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump_all(documents))
    outputs = []
    for sent in (1, 2):  # the second run, on the same workdir, signs with the same key
        port = free_port()
        process = start_local(config, workdir, port, state)
        try:
            send_when_up(process, port)
            sink.wait_for(sent)
        finally:
            outputs.append(stop(process))
        assert process.returncode == 0, outputs[-1]
    [line] = (workdir / "dkim-loc.txt").read_text().splitlines()
    record_name, ttl, _, kind, data = line.split(" ", 4)
    assert (record_name, ttl, kind) == ("loc._domainkey.local.example.com.", "3600", "TXT")
    assert f"publish in DNS (also in {workdir / 'dkim-loc.txt'}):\n    {line}\n" in outputs[0]
    txt = "".join(data.split('"')[1::2]).encode()
    if key_from != "generated":
        assert txt.endswith(dkim.public_key_data("rsa", given, "test").encode())
    for got in sink.wait_for(2):
        assert dkimpy.verify(got.data, dnsfunc=lambda name, timeout=5: txt if name.decode() == record_name else None)
