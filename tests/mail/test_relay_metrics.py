"""The relay's metrics and the Delivering condition, on real Postfix and Debian's prometheus-postfix-exporter.

The exporter runs through the image's own sidecar script (image/postfix/metrics.sh) against a local
Postfix started by the image's entrypoint; the condition is computed by the operator's code
(mailrelay.controller.delivery, mailrelay.controller.status) from what that exporter and Postfix's log really say.
"""

from __future__ import annotations

import shutil
import smtplib
import time
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.controller import delivery
from mailrelay.controller import status as st

from support.one_pass import scrape_once
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay, pod_template, relay_object
from support.smtp_sink import Sink, free_port
from support.wait import present

POD = "127.0.0.5"


@pytest.fixture
def exporter_ready() -> None:
    if not shutil.which("prometheus-postfix-exporter"):
        pytest.fail("Debian's prometheus-postfix-exporter is needed (make system-deps)", pytrace=False)


def sidecar_capabilities() -> list[str]:
    """The capabilities the rendered sidecar keeps."""

    [_, sidecar] = pod_template(make_relay({"mailFromFQDN": "a.example"}))["spec"]["containers"]
    caps = sidecar["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    return list(caps["add"])


def send(instance: HarnessPostfix, count: int) -> None:
    for number in range(count):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "app@pod.local", "ops@example.org", f"message {number}"
        msg.set_content("hello\n")
        with smtplib.SMTP(instance.listen, instance.port, source_address=(POD, 0), timeout=30) as smtp:
            smtp.send_message(msg)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def wait_for(url: str, done: Callable[[delivery.Sample], bool], timeout: float = 30) -> tuple[delivery.Sample, str]:
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)
        sample = present(delivery.parse(text))
        if done(sample) or time.monotonic() > deadline:
            return sample, text
        time.sleep(0.3)


def relay_spec(port: int, **relay: Any) -> dict[str, Any]:
    return {
        "mailFromFQDN": "mail.example.com",
        "allowedNetworks": ["127.0.0.4/30"],
        "relay": {"host": "127.0.0.1", "port": port, "tls": "None", **relay},
    }


def delivering(health: delivery.Health, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Delivering condition as status.build writes it for a Ready relay."""
    built = st.build(
        assessment=cond.Assessment(True, cond.AVAILABLE, "up"),
        generation=1,
        previous=previous,
        now="2026-01-01T00:00:00Z",
        delivery=health,
    )
    condition = st.condition(built, cond.DELIVERING)
    assert condition is not None
    return {
        "status": condition["status"],
        "reason": condition["reason"],
        "message": condition["message"],
        "queue": built.get("queue"),
    }


def test_deliveries_to_a_working_smarthost_are_counted(
    start_postfix: Any, sinks: list[Sink], exporter_ready: None
) -> None:
    sink = Sink().start()
    sinks.append(sink)
    instance = start_postfix(make_relay(relay_spec(sink.port)))
    url = instance.start_exporter(free_port(), capabilities=sidecar_capabilities())
    send(instance, 2)
    sink.wait_for(2)
    sample, text = wait_for(url, lambda s: s.attempts >= 2)
    assert "postfix_up" in text and sample.attempts == 2 and sample.deferred_attempts == 0
    assert sample.queues == dict.fromkeys(delivery.QUEUES, 0)
    assert present(delivery.parse(text)).queues["deferred"] == 0
    families = {
        line.split()[0]: float(line.split()[-1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    assert families["postfix_cleanup_messages_processed_total"] == 2
    assert families["postfix_smtpd_connects_total"] >= 2
    condition = delivering(delivery.assess([sample], pods=1))
    assert condition["status"] == "True" and condition["reason"] == cond.FLOWING
    assert condition["queue"] == {"active": 0, "deferred": 0, "hold": 0, "incoming": 0, "oldestMessageAge": ""}


def test_a_refused_login_turns_delivering_false_until_the_secret_is_fixed(
    start_postfix: Any, sinks: list[Sink], exporter_ready: None
) -> None:
    sink = Sink(credentials=("relay-user", "right")).start()
    sinks.append(sink)
    instance = start_postfix(
        make_relay(relay_spec(sink.port, authSecretRef={"name": "smarthost"})),
        secret={"username": "relay-user", "password": "wrong"},
    )
    url = instance.start_exporter(free_port(), capabilities=sidecar_capabilities())
    send(instance, 3)
    sample, text = wait_for(url, lambda s: s.queues["deferred"] == 3 and s.deferred_attempts == 3)
    assert sample.queues["deferred"] == 3 and sample.deferred_attempts == 3 and sample.attempts == 3, text
    assert sample.oldest_age_bound is not None and sample.oldest_age_bound <= 100
    assert not sink.received and sink.auth_attempts
    reasons = delivery.deferral_reasons(instance.log())
    assert len(reasons) == 3 and "535" in reasons[-1]
    assert delivery.assess([sample], pods=1, reasons=reasons).reason == cond.AUTH_FAILED
    # The operator's probe, as the resync runs it: the pod's IP and metrics port, the pod's log.
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    health = scrape_once(
        relay_object(relay_spec(sink.port)),
        [("mailrelay-a-1", "127.0.0.1", True)],
        port=port,
        read_log=lambda ns, name: instance.log(),
    )
    assert health is not None
    failed = delivering(health)
    assert failed["status"] == "False" and failed["reason"] == cond.AUTH_FAILED
    assert failed["message"].startswith("3 messages deferred") and "SASL authentication failed" in failed["message"]
    assert failed["queue"]["deferred"] == 3 and failed["queue"]["oldestMessageAge"] in ("under 10s", "under 100s")
    assert "wrong" not in str(failed)  # the password never reaches the status

    instance.restart(secret={"password": "right"})  # a rolled pod with the fixed Secret, same queue
    assert instance.postfix("flush").returncode == 0
    sink.wait_for(3)
    sample, text = wait_for(url, lambda s: s.queues["deferred"] == 0 and s.attempts >= 6)
    assert sample.queues["deferred"] == 0 and sample.attempts == 6 and sample.deferred_attempts == 3, text
    built = st.build(
        assessment=cond.Assessment(True, cond.AVAILABLE, "up"),
        generation=1,
        previous=None,
        now="2026-01-01T00:00:00Z",
        delivery=health,
    )
    recovered = delivering(
        delivery.assess([sample], pods=1, reasons=delivery.deferral_reasons(instance.log())), previous=built
    )
    assert recovered["status"] == "True" and recovered["reason"] == cond.FLOWING
    assert recovered["queue"]["deferred"] == 0 and recovered["queue"]["oldestMessageAge"] == ""


def test_the_log_reaches_stdout_and_stays_bounded_while_the_exporter_follows_it(
    start_postfix: Any, sinks: list[Sink], exporter_ready: None
) -> None:
    """The pod's logging as rendered: Postfix writes the file, log.sh copies it to stdout and truncates it."""
    from mailrelay import scripts

    sink = Sink().start()
    sinks.append(sink)
    relay = make_relay(relay_spec(sink.port))
    [container, _] = pod_template(relay)["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    instance = start_postfix(relay, run=False)
    instance.extra_env = {
        "MAILRELAY_MAILLOG_ECHO": str(scripts.path("log.sh")),  # /usr/local/bin/mailrelay-log there
        "MAILRELAY_MAILLOG_MAX_BYTES": "2000",
        "MAILRELAY_MAILLOG_CHECK_SECONDS": "1",
    }
    assert env["MAILRELAY_MAILLOG_ECHO"].endswith("mailrelay-log") and int(env["MAILRELAY_MAILLOG_MAX_BYTES"]) > 0
    instance.start()
    url = instance.start_exporter(free_port())
    send(instance, 6)
    sink.wait_for(6)
    sample, text = wait_for(url, lambda s: s.attempts >= 6)
    assert sample.attempts == 6, text  # counted across the truncations
    deadline = time.monotonic() + 30
    while instance.output.read_text().count("status=sent") < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    stdout = instance.output.read_text()
    assert stdout.count("status=sent") == 6 and "postfix/smtpd" in stdout  # what `kubectl logs` shows
    time.sleep(3)
    assert instance.maillog.stat().st_size <= 2000  # truncated once past the limit


def test_without_its_capability_the_sidecar_cannot_reach_the_queue(start_postfix: Any, exporter_ready: None) -> None:
    """Postfix's public/ directory is postfix:postdrop 0710: a DAC capability is what lets root in."""
    from mailrelay.local.runner import LocalRelayError

    instance = start_postfix(make_relay({"mailFromFQDN": "a.example"}))
    instance.extra_env = {"MAILRELAY_METRICS_WAIT_SECONDS": "2"}
    with pytest.raises(LocalRelayError, match="showq socket"):
        instance.start_exporter(free_port(), capabilities=[])
    text = scrape(instance.start_exporter(free_port(), capabilities=sidecar_capabilities()))
    assert any(line.startswith("postfix_up{") and line.endswith(" 1") for line in text.splitlines())
