"""The product's core promise, on a real Postfix started from the rendered files via the entrypoint.

Clients send from 127.0.0.5, inside allowedNetworks but not the loopback address Postfix always
trusts, so they are treated exactly like pods; the aiosmtpd sink stands in for the smarthost.
"""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.loopback_ca import LoopbackCA
from support.mail import FQDN, OUTSIDER, POD, message, relay_spec, send, wait_for_log
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink


def with_login(
    start_postfix: Any, sinks: list[Sink], accepted: tuple[str, str], secret: dict[str, str], **relay: Any
) -> tuple[Sink, HarnessPostfix]:
    """A sink that requires AUTH with `accepted`, and Postfix logging in with the `secret` files."""
    sink = Sink(credentials=accepted, tls_context=relay.pop("tls_context", None)).start()
    sinks.append(sink)
    spec = relay_spec(sink, relay={"authSecretRef": {"name": "smarthost"}, **relay})
    return sink, start_postfix(make_relay(spec), secret=secret)


@pytest.mark.parametrize(
    ("envelope", "header", "want_envelope", "want_header"),
    [
        ("root@6ba2d5764050", "root@6ba2d5764050", f"root@{FQDN}", f"root@{FQDN}"),
        ("root", "root", f"root@{FQDN}", f"root@{FQDN}"),
        (
            "app@pod-7f9c.default.svc.cluster.local",
            '"App" <app@pod-7f9c.default.svc.cluster.local>',
            f"app@{FQDN}",
            f'"App" <app@{FQDN}>',
        ),
        (f"billing@{FQDN}", f"billing@{FQDN}", f"billing@{FQDN}", f"billing@{FQDN}"),
        ("ROOT@POD-1.CLUSTER.LOCAL", "ROOT@POD-1.CLUSTER.LOCAL", f"ROOT@{FQDN}", f"ROOT@{FQDN}"),
        (
            "noreply@corp.example.org",
            "noreply@corp.example.org",
            "noreply@corp.example.org",
            "noreply@corp.example.org",
        ),
        (
            "jobs@eu.corp.example.org",
            "jobs@eu.corp.example.org",
            "jobs@eu.corp.example.org",
            "jobs@eu.corp.example.org",
        ),
        ("x@notcorp.example.org", "x@notcorp.example.org", f"x@{FQDN}", f"x@{FQDN}"),
        ("cron+alerts@6ba2d5764050", "cron+alerts@6ba2d5764050", f"alerts-cron@{FQDN}", f"alerts-cron@{FQDN}"),
    ],
)
def test_senders_are_rewritten_in_envelope_and_headers(
    start_postfix: Any, sink: Sink, envelope: str, header: str, want_envelope: str, want_header: str
) -> None:
    relay = make_relay(
        relay_spec(
            sink,
            rewrite={
                "keepDomains": ["corp.example.org"],
                "rules": [{"pattern": r"([^+@]+)\+alerts@.*", "replacement": f"alerts-$1@{FQDN}"}],
            },
        )
    )
    instance = start_postfix(relay)
    body = "line one\nline two with unicode: \u00e9\n.leading dot\n"
    send(instance, envelope, message(header, body, Sender=header))
    [got] = sink.wait_for(1)
    assert got.mail_from == want_envelope
    assert got.header("From") == want_header
    assert got.header("Sender") == want_header
    assert got.message.get_content().replace("\r\n", "\n") == body  # SMTP carries CRLF line ends
    assert got.rcpt_tos == ["ops@example.org"]


def test_header_without_from_gets_one_at_the_fqdn(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink)))
    send(instance, "worker@6ba2d5764050", message(None))
    [got] = sink.wait_for(1)
    assert got.mail_from == f"worker@{FQDN}"
    assert got.header("From") == f"worker@{FQDN}"


def test_a_bounce_keeps_the_null_sender_and_does_not_loop(start_postfix: Any, sink: Sink) -> None:
    """A permanent failure bounces to the rewritten sender with MAIL FROM:<>, once."""
    instance = start_postfix(make_relay(relay_spec(sink)))
    send(instance, "root@6ba2d5764050", message("root@6ba2d5764050"), to="reject-me@example.org")
    [bounce] = sink.wait_for(1)
    assert bounce.mail_from == "<>"
    assert bounce.rcpt_tos == [f"root@{FQDN}"]
    assert "reject-me@example.org" in bounce.data.decode(errors="replace")
    time.sleep(2)  # a bounce of the bounce would have arrived by now
    assert len(sink.received) == 1
    assert instance.queued() == 0


def test_rule_result_outside_kept_domains_is_still_rewritten(start_postfix: Any, sink: Sink) -> None:
    """A rule cannot make mail leave from a domain the relay's owner did not list."""
    relay = make_relay(
        relay_spec(sink, rewrite={"rules": [{"pattern": "(.*)@db-.*", "replacement": "$1@elsewhere.example.net"}]})
    )
    instance = start_postfix(relay)
    send(instance, "backup@db-0", message("backup@db-0"))
    [got] = sink.wait_for(1)
    assert got.mail_from == f"backup@{FQDN}"


def test_smarthost_login_uses_the_secret(start_postfix: Any, sinks: list[Sink]) -> None:
    sink, instance = with_login(
        start_postfix, sinks, ("relay-user", "s3cret pass"), {"username": "relay-user\n", "password": "s3cret pass"}
    )
    send(instance, "root@pod", message("root@pod"))
    [got] = sink.wait_for(1)
    assert got.auth == ("relay-user", "s3cret pass")
    assert got.mail_from == f"root@{FQDN}"
    # The password went into the root-only map and nowhere else that is readable.
    sasl = instance.config_dir / "sasl_passwd"
    assert oct(sasl.stat().st_mode & 0o777) == "0o600"
    assert "s3cret pass" not in instance.log()
    assert all("s3cret" not in p.read_text() for p in instance.config_dir.iterdir() if p.name != "sasl_passwd")


def test_wrong_password_keeps_mail_queued_with_a_clear_log(start_postfix: Any, sinks: list[Sink]) -> None:
    sink, instance = with_login(
        start_postfix, sinks, ("relay-user", "right"), {"username": "relay-user", "password": "wrong"}
    )
    send(instance, "root@pod", message("root@pod"))
    wait_for_log(instance, "SASL authentication failed")
    assert sink.auth_attempts and sink.auth_attempts[-1] == ("relay-user", "wrong")
    assert sink.received == []
    assert instance.queued() == 1


def test_missing_secret_keys_stop_the_start(start_postfix: Any, sink: Sink) -> None:
    relay = make_relay(relay_spec(sink, relay={"authSecretRef": {"name": "smarthost"}}))
    instance = start_postfix(relay, secret={"username": "only-user"}, run=False)
    with pytest.raises(Exception, match="did not start"):
        instance.start()
    assert "must have the keys username and password" in instance.output.read_text()


def test_encrypt_never_sends_in_plain_text(start_postfix: Any, sink: Sink) -> None:
    """tls: Encrypt against a server without STARTTLS: the mail waits, it is not sent in the clear."""
    instance = start_postfix(make_relay(relay_spec(sink, relay={"tls": "Encrypt"})))
    send(instance, "root@pod", message("root@pod"))
    wait_for_log(instance, "TLS is required, but was not offered")
    assert sink.received == []
    assert instance.queued() == 1


@pytest.fixture
def server_tls(tmp_path: Path) -> ssl.SSLContext:
    """A certificate for the test smarthost (Encrypt does not verify it, by design)."""
    return LoopbackCA(tmp_path).server_context()


def test_encrypt_delivers_over_starttls_with_login(
    start_postfix: Any, sinks: list[Sink], server_tls: ssl.SSLContext
) -> None:
    sink, instance = with_login(
        start_postfix, sinks, ("u", "p"), {"username": "u", "password": "p"}, tls="Encrypt", tls_context=server_tls
    )
    send(instance, "root@pod", message("root@pod"))
    [got] = sink.wait_for(1)
    assert got.auth == ("u", "p")
    assert "TLS connection established to 127.0.0.1" in instance.log()


def test_wrapper_delivers_over_smtps_on_465(start_postfix: Any, sinks: list[Sink], server_tls: ssl.SSLContext) -> None:
    """tls: Wrapper speaks TLS from the first byte, as port 465 wants; the spec only allows 465."""
    try:
        sink = Sink(port=465, credentials=("u", "p"), implicit_tls=server_tls).start()
    except OSError as exc:  # the port is someone else's on this machine
        pytest.fail(f"cannot listen on 127.0.0.1:465 for the SMTPS test: {exc}")
    sinks.append(sink)
    spec = relay_spec(sink, relay={"tls": "Wrapper", "port": 465, "authSecretRef": {"name": "smarthost"}})
    instance = start_postfix(make_relay(spec), secret={"username": "u", "password": "p"})
    send(instance, "root@pod", message("root@pod"))
    [got] = sink.wait_for(1)
    assert got.auth == ("u", "p") and got.mail_from == f"root@{FQDN}"
    assert "TLS connection established to 127.0.0.1[127.0.0.1]:465" in instance.log()


def test_closed_relay_refuses_clients_outside_allowed_networks(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink)))
    with pytest.raises(smtplib.SMTPConnectError) as refused:  # refused in the greeting, before any command
        send(instance, "spam@outside.example", message("spam@outside.example"), source=OUTSIDER)
    assert refused.value.smtp_code == 554 and b"Client host rejected: Access denied" in refused.value.smtp_error
    send(instance, "root@pod", message("root@pod"), source=POD)  # an allowed client still gets through
    [got] = sink.wait_for(1)
    time.sleep(1)  # a leaked refused message would have arrived by now too
    assert [r.mail_from for r in sink.received] == [got.mail_from] == [f"root@{FQDN}"]
    assert instance.queued() == 0


def test_message_over_the_size_limit_is_refused_at_smtp_time(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink, messageSizeLimitBytes=20000)))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(instance, "root@pod", message("root@pod", body="x" * 30000 + "\n"))
    assert refused.value.smtp_code == 552
    send(instance, "root@pod", message("root@pod", body="small\n"))
    assert len(sink.wait_for(1)) == 1


def test_no_mail_lost_while_the_smarthost_is_down(start_postfix: Any, sinks: list[Sink]) -> None:
    sink = Sink()  # not started: the smarthost is down
    sinks.append(sink)
    instance = start_postfix(make_relay(relay_spec(sink)))
    ids = []
    for _ in range(5):
        msg = message("root@pod")
        ids.append(msg["Message-ID"])
        send(instance, "root@pod", msg)
    wait_for_log(instance, "Connection refused")
    # Every message deferred before the smarthost comes back: one still being tried during the flush
    # below would be deferred after it, for the 300 s minimal backoff.
    deadline = time.monotonic() + 30
    while instance.log().count("status=deferred") < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert instance.log().count("status=deferred") == 5
    assert instance.queued() == 5
    sink.start()
    assert instance.postfix("flush").returncode == 0
    sink.wait_for(5)
    time.sleep(1)  # duplicates would show up now
    assert sorted(r.message["Message-ID"] for r in sink.received) == sorted(ids)
    assert instance.queued() == 0


def test_prestop_drain_delivers_queued_mail_before_returning(start_postfix: Any, sinks: list[Sink]) -> None:
    sink = Sink()
    sinks.append(sink)
    instance = start_postfix(make_relay(relay_spec(sink)))
    send(instance, "root@pod", message("root@pod"))
    wait_for_log(instance, "Connection refused")
    assert instance.queued() == 1
    sink.start()
    result = instance.run_script("drain.sh", env={"MAILRELAY_ENDPOINT_WAIT_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    assert "queue empty" in result.stdout
    assert len(sink.received) == 1  # delivered before the hook returned
    assert instance.queued() == 0


def test_drain_gives_up_at_its_deadline_and_says_so(start_postfix: Any, sinks: list[Sink]) -> None:
    sink = Sink()  # stays down
    sinks.append(sink)
    instance = start_postfix(make_relay(relay_spec(sink)))
    send(instance, "root@pod", message("root@pod"))
    result = instance.run_script(
        "drain.sh",
        env={"MAILRELAY_DRAIN_SECONDS": "2", "MAILRELAY_ENDPOINT_WAIT_SECONDS": "0", "MAILRELAY_HANDOFF_TARGET": ""},
    )
    assert result.returncode == 0
    assert "1 message(s) left in the queue (no hand-off target is set)" in result.stdout
    assert instance.termination_log.read_text().startswith("mailrelay-drain: 1 message(s) left in the queue")


def _postfix_pids(instance: HarnessPostfix) -> list[int]:
    master = int((instance.queue_dir / "pid" / "master.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def test_probes_follow_the_health_of_postfix(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink)))
    env = {"MAILRELAY_PROBE_TIMEOUT": "2"}
    for mode in ("live", "ready"):
        result = instance.run_script("probe.sh", mode, env=env)
        assert result.returncode == 0, result.stderr
    pids = _postfix_pids(instance)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for mode in ("live", "ready"):
            hung = instance.run_script("probe.sh", mode, env=env)
            assert hung.returncode != 0
            assert "did not answer" in hung.stderr
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert instance.run_script("probe.sh", "live", env=env).returncode == 0
    instance.postfix("stop")
    deadline = time.monotonic() + 10
    while instance.postfix("status").returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    for mode in ("live", "ready"):
        stopped = instance.run_script("probe.sh", mode, env=env)
        assert stopped.returncode != 0
        assert "master is not running" in stopped.stderr


def test_corrupt_map_makes_the_entrypoint_fail_with_postfix_reason(start_postfix: Any, sink: Sink) -> None:
    relay = make_relay(relay_spec(sink))
    instance = start_postfix(relay, run=False, extra_files={"sender_canonical": "/unbalanced(/ x\n"})
    run = instance.run_script("entrypoint.sh", timeout=60)
    assert run.returncode != 0
    assert "configuration is not usable" in run.stderr
    assert "Unmatched ( or \\(" in run.stderr
