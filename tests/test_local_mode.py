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

import pytest
import yaml

from mailrelay import local
from mailrelay.spec import parse

from conftest import relay_object
from smtp_sink import Sink, free_port


def test_local_mode_relays_and_rewrites(postfix_ready: None, sinks: list[Sink], tmp_path: Path) -> None:
    sink = Sink().start()
    sinks.append(sink)
    relay = relay_object({"mailFromFQDN": "local.example.com",
                          "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"}}, uid=None)
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump(relay))
    workdir = Path(tempfile_dir())
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
        [got] = sink.wait_for(1)
        assert got.mail_from == "root@local.example.com"
        assert got.header("From") == "root@local.example.com"
    finally:
        process.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it; Ctrl-C is the same path
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"on 127.0.0.1:{port}, senders rewritten to @local.example.com" in output
    assert "from=<root@local.example.com>" in output  # the Postfix log is shown to the user
    pid_file = workdir / "queue" / "pid" / "master.pid"
    assert not pid_file.exists() or subprocess.run(["kill", "-0", pid_file.read_text().split()[0]],
                                                   capture_output=True).returncode != 0  # Postfix stopped
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
