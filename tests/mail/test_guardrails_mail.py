"""Per-client limits and the recipient allow-list on a real Postfix started from the rendered files.

Clients send from addresses inside allowedNetworks but outside loopback, like pods; 127.0.0.1, the
address of the probes and the drain, is the only one the limits exempt.
"""

from __future__ import annotations

import smtplib
import socket
import time
from typing import Any

import pytest

from mailrelay.render import postfix
from mailrelay.render.postfix import RECIPIENT_REFUSAL

from support.mail import FQDN, OUTSIDER, POD, message, relay_spec, send
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink

OTHER_POD = "127.0.0.6"
RATE_WINDOW = 60  # anvil_rate_time_unit as rendered


@pytest.fixture
def sink(sinks: list[Sink]) -> Sink:
    created = Sink().start()
    sinks.append(created)
    return created


def _try(instance: HarnessPostfix, source: str, recipients: list[str]) -> tuple[Any, str]:
    """Send one message; (None, Message-ID) when accepted, else (the refusal, Message-ID)."""
    msg = message("app@pod")
    try:
        with smtplib.SMTP(instance.listen, instance.port, source_address=(source, 0), timeout=30) as smtp:
            refused = smtp.send_message(msg, from_addr="app@pod", to_addrs=recipients)
    except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused, smtplib.SMTPConnectError) as exc:
        return exc, msg["Message-ID"]
    assert refused == {}, refused
    return None, msg["Message-ID"]


def test_limits_refuse_for_now_and_the_retry_is_delivered(start_postfix: Any, sink: Sink) -> None:
    limits = {"messagesPerMinute": 2, "recipientsPerMinute": 3, "concurrentConnections": 2}
    instance = start_postfix(make_relay(relay_spec(sink, limits=limits)))
    delivered: list[str] = []
    # Messages: two per minute from one client, the third refused at MAIL FROM with a 4xx.
    for _ in range(2):
        refusal, message_id = _try(instance, POD, ["ops@example.org"])
        assert refusal is None
        delivered.append(message_id)
    refusal, pending_messages = _try(instance, POD, ["ops@example.org"])
    assert isinstance(refusal, smtplib.SMTPSenderRefused)
    assert refusal.smtp_code == 450 and b"4.7.1 Error: too much mail from 127.0.0.5" in refusal.smtp_error
    # Recipients are counted per client too: another pod has its own budget, three per minute.
    refusal, message_id = _try(instance, OTHER_POD, ["a@example.org", "b@example.org", "c@example.org"])
    assert refusal is None
    delivered.append(message_id)
    refusal, pending_recipients = _try(instance, OTHER_POD, ["d@example.org"])
    assert isinstance(refusal, smtplib.SMTPRecipientsRefused)
    [(code, text)] = refusal.recipients.values()
    assert code == 450 and b"4.7.1 Error: too many recipients from 127.0.0.6" in text
    # Loopback (the probes, the drain) is exempt: the limits must not take the pod out of service.
    refusal, message_id = _try(instance, "127.0.0.1", ["ops@example.org"])
    assert refusal is None
    delivered.append(message_id)
    # The client retries, as an MTA does after a 4xx; within the next window it gets through.
    deadline = time.monotonic() + RATE_WINDOW + 30
    pending = {POD: pending_messages, OTHER_POD: pending_recipients}
    while pending and time.monotonic() < deadline:
        time.sleep(5)
        for source in list(pending):
            refusal, message_id = _try(instance, source, ["retry@example.org"])
            if refusal is None:
                delivered.append(message_id)
                del pending[source]
            else:
                assert getattr(refusal, "smtp_code", None) in (450, None), refusal  # still temporary
    assert not pending, f"still refused after {RATE_WINDOW + 30}s: {sorted(pending)}"
    got = sink.wait_for(len(delivered))
    time.sleep(1)  # a refused message that leaked through would show up now
    assert sorted(r.message["Message-ID"] for r in sink.received) == sorted(delivered)
    assert all(r.mail_from == f"app@{FQDN}" for r in got)
    assert instance.queued() == 0


def _banner(source: str, instance: HarnessPostfix) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((instance.listen, instance.port), timeout=10, source_address=(source, 0))
    return sock, sock.recv(512)


def test_concurrent_connections_over_the_limit_get_421(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink, limits={"concurrentConnections": 2})))
    held = [_banner(POD, instance) for _ in range(2)]
    try:
        assert all(banner.startswith(b"220 ") for _, banner in held)
        extra, banner = _banner(POD, instance)
        extra.close()
        assert banner.startswith(b"421 4.7.0 ") and b"Error: too many connections from 127.0.0.5" in banner
        other, banner = _banner(OTHER_POD, instance)  # another client is not affected
        other.close()
        assert banner.startswith(b"220 ")
    finally:
        for sock, _ in held:
            sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # anvil hears of the disconnects within moments
        refusal, _ = _try(instance, POD, ["ops@example.org"])
        if refusal is None:
            break
        time.sleep(0.5)
    assert refusal is None
    assert len(sink.wait_for(1)) == 1


def test_without_the_loopback_only_exceptions_pods_would_be_exempt(start_postfix: Any, sink: Sink) -> None:
    """Why smtpd_client_event_limit_exceptions is rendered: Postfix's default exempts $mynetworks."""
    relay = make_relay(relay_spec(sink, limits={"messagesPerMinute": 1}))
    rendered = postfix.main_cf(relay.spec)
    assert "smtpd_client_event_limit_exceptions = 127.0.0.1/32 [::1]/128\n" in rendered
    default = "".join(
        line for line in rendered.splitlines(True) if not line.startswith("smtpd_client_event_limit_exceptions")
    )
    instance = start_postfix(relay, extra_files={postfix.MAIN_CF: default})
    for _ in range(3):
        assert _try(instance, POD, ["ops@example.org"])[0] is None
    assert len(sink.wait_for(3)) == 3


def test_limits_zero_turns_them_off(start_postfix: Any, sink: Sink) -> None:
    limits = {"messagesPerMinute": 0, "recipientsPerMinute": 0, "concurrentConnections": 0}
    instance = start_postfix(make_relay(relay_spec(sink, limits=limits)))
    for _ in range(5):
        assert _try(instance, POD, ["a@example.org", "b@example.org"])[0] is None
    assert len(sink.wait_for(5)) == 5


ALLOWED = ["example.org", "corp.example.net"]
RECIPIENTS = [  # (recipient, allowed)
    ("ops@example.org", True),
    ("OPS@EXAMPLE.ORG", True),
    ("team@eu.example.org", True),  # a subdomain
    ("x@a.b.corp.example.net", True),
    ("x%evil.example@example.org", True),  # no percent hack for non-local domains: stays at example.org
    ("x@notexample.org", False),  # a suffix is not a subdomain
    ("x@example.org.evil.example", False),
    ("x@example.net", False),
    ("x@corp-example.net", False),
    ('"x@example.org"@evil.example', False),  # the domain is what follows the last @
]


def test_recipient_allow_list(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink, recipients={"allowDomains": ALLOWED})))
    accepted = 0
    for recipient, allowed in RECIPIENTS:
        if allowed:
            send(instance, "app@pod", message("app@pod"), to=recipient)
            accepted += 1
            continue
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(instance, "app@pod", message("app@pod"), to=recipient)
        [(code, text)] = refused.value.recipients.values()
        assert code == 550 and b"5.7.1" in text, (recipient, text)
        assert RECIPIENT_REFUSAL.split(" ", 2)[2].encode() in text, text
    got = sink.wait_for(accepted)
    time.sleep(1)  # a refused recipient that leaked through would show up now
    assert len(sink.received) == accepted and instance.queued() == 0
    for delivered in got:
        [address] = delivered.rcpt_tos
        domain = address.rsplit("@", 1)[1].lower()
        assert any(domain == d or domain.endswith("." + d) for d in ALLOWED), address


def test_allow_list_keeps_the_relay_closed_and_refuses_only_the_disallowed_recipients(
    start_postfix: Any, sink: Sink
) -> None:
    instance = start_postfix(make_relay(relay_spec(sink, recipients={"allowDomains": ALLOWED})))
    # An allowed recipient does not open the relay to an outside client.
    # (The outside client is refused in the greeting, before any recipient is looked at.)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        send(instance, "spam@outside.example", message("spam@outside.example"), source=OUTSIDER)
    assert refused.value.smtp_code == 554
    # Mixed recipients: the allowed ones get the message, the others a 550 each.
    with smtplib.SMTP(instance.listen, instance.port, source_address=(POD, 0), timeout=30) as smtp:
        refused_now = smtp.send_message(
            message("app@pod"),
            from_addr="app@pod",
            to_addrs=["a@example.org", "b@elsewhere.example", "c@corp.example.net"],
        )
    assert list(refused_now) == ["b@elsewhere.example"] and refused_now["b@elsewhere.example"][0] == 550
    [got] = sink.wait_for(1)
    time.sleep(1)
    assert len(sink.received) == 1 and sorted(got.rcpt_tos) == ["a@example.org", "c@corp.example.net"]


def test_a_broken_allow_list_stops_the_start(start_postfix: Any, sink: Sink) -> None:
    relay = make_relay(relay_spec(sink, recipients={"allowDomains": ALLOWED}))
    instance = start_postfix(relay, run=False, extra_files={postfix.RECIPIENT_ACCESS: "/unbalanced(/ DUNNO\n"})
    run = instance.run_script("entrypoint.sh", timeout=60)
    assert run.returncode != 0
    assert "configuration is not usable" in run.stderr and "recipient_access" in run.stderr
