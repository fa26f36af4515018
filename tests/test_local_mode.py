"""`mailrelay-operator local`: one relay on this machine's Postfix, end to end, as a user runs it."""

from __future__ import annotations

import shutil
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
import yaml

from mailrelay import dkim, local
from mailrelay.spec import parse

from conftest import relay_object
from smtp_sink import Sink, free_port


def run_local_mode(documents: list[dict[str, Any]], tmp_path: Path, workdir: Path, sink: Sink) -> tuple[str, int]:
    """Run `mailrelay-operator local` on these documents, send one message, wait for it at the sink,
    and stop it as `kill` does."""
    before = len(sink.received)
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump_all(documents))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mailrelay", "local", "-f", str(config), "--port", str(port),
                                "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
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
                break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "local mode did not start listening"
                time.sleep(0.2)
        sink.wait_for(before + 1)
    finally:
        process.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it; Ctrl-C is the same path
        output, _ = process.communicate(timeout=30)
    return output, process.returncode


def test_local_mode_relays_and_rewrites(postfix_ready: None, sinks: list[Sink], tmp_path: Path) -> None:
    sink = Sink().start()
    sinks.append(sink)
    relay = relay_object({"mailFromFQDN": "local.example.com",
                          "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"}}, uid=None)
    workdir = Path(tempfile_dir())
    output, returncode = run_local_mode([relay], tmp_path, workdir, sink)
    [got] = sink.wait_for(1)
    assert got.mail_from == "root@local.example.com"
    assert got.header("From") == "root@local.example.com"
    assert returncode == 0, output
    assert "senders rewritten to @local.example.com" in output
    assert "from=<root@local.example.com>" in output  # the Postfix log is shown to the user
    pid_file = workdir / "queue" / "pid" / "master.pid"
    assert not pid_file.exists() or subprocess.run(["kill", "-0", pid_file.read_text().split()[0]],
                                                   capture_output=True).returncode != 0  # Postfix stopped
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("key_from", ["generated", "secret in the file"])
def test_local_mode_signs_and_writes_the_dns_record(postfix_ready: None, sinks: list[Sink], tmp_path: Path,
                                                    key_from: str) -> None:
    sink = Sink().start()
    sinks.append(sink)
    spec: dict[str, Any] = {"mailFromFQDN": "local.example.com", "dkim": {"selector": "loc"},
                            "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"}}
    documents = [relay_object(spec, uid=None)]
    given = dkim.generate("rsa", 2048)
    if key_from != "generated":
        spec["dkim"]["keySecretRef"] = {"name": "my-dkim"}
        documents.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-dkim", "namespace": "apps"},
                          "stringData": {"rsa.private": given.decode()}})
    workdir = Path(tempfile_dir())
    output, returncode = run_local_mode(documents, tmp_path, workdir, sink)
    assert returncode == 0, output
    [line] = (workdir / "dkim-loc.txt").read_text().splitlines()
    record_name, ttl, _, kind, data = line.split(" ", 4)
    assert (record_name, ttl, kind) == ("loc._domainkey.local.example.com.", "3600", "TXT")
    assert f"publish in DNS (also in {workdir / 'dkim-loc.txt'}):\n    {line}\n" in output
    txt = "".join(data.split('"')[1::2]).encode()
    if key_from != "generated":
        assert txt.endswith(dkim.public_key_data("rsa", given, "test").encode())
    run_local_mode(documents, tmp_path, workdir, sink)  # the same workdir: the same key and record
    assert (workdir / "dkim-loc.txt").read_text() == f"{line}\n"
    for got in sink.wait_for(2):
        assert dkimpy.verify(got.data, dnsfunc=lambda name, timeout=5: txt if name.decode() == record_name else None)
    shutil.rmtree(workdir, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="mailrelay-local-test-")
    Path(path).chmod(0o755)
    return path


def test_local_mode_without_postfix_says_how_to_install(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda *args, **kwargs: None)
    relay = parse(relay_object({"mailFromFQDN": "a.example.com"}))
    assert local.run_local(relay, port=2525, listen="127.0.0.1", workdir=None) == 1
    err = capsys.readouterr().err
    assert "Postfix is not installed" in err and "apt-get install -y postfix" in err


def test_local_mode_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(relay_object({"mailFromFQDN": "nodot"})))
    result = subprocess.run([sys.executable, "-m", "mailrelay", "local", "-f", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert "spec.mailFromFQDN" in result.stderr


pytestmark = pytest.mark.postfix
