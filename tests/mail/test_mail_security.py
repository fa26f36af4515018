"""Attacks on the relay, on real Postfix: clients in their own network namespace where addresses matter.

Each test is one class of attack: a client outside allowedNetworks, SMTP smuggling with bare line
feeds, rules that try to switch the rewrite off, and headers that must or must not be rewritten.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api.spec import Relay
from mailrelay.render.postfix import UnsafeValue

from support import netns
from support.mail import FQDN, message, relay_spec, send
from support.samples import make_relay
from support.smtp_sink import Sink


@pytest.fixture
def namespace(postfix_ready: None) -> Iterator[netns.Namespace]:
    problem = netns.problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the network-namespace tests need: {problem}")
        pytest.skip(problem)
    with netns.client_namespace() as created:
        yield created


RECIPIENTS = [
    "postmaster",
    "Postmaster",
    f"postmaster@{FQDN}",
    "abuse",
    "root",
    "ops@example.org",
    "postmaster@example.org",
]


def test_no_recipient_at_all_is_accepted_from_outside(
    start_postfix: Any, sink: Sink, namespace: netns.Namespace
) -> None:
    """Rejected at connect: Postfix's postmaster exception never gets a chance to apply."""
    relay = make_relay(relay_spec(sink))  # allowedNetworks 127.0.0.4/30: the namespace is outside
    instance = start_postfix(relay, listen=namespace.host_address)
    chunks = ["EHLO outside.example\r\n", "MAIL FROM:<spam@outside.example>\r\n"]
    chunks += [f"RCPT TO:<{rcpt}>\r\n" for rcpt in RECIPIENTS]
    chunks += ["DATA\r\n", "Subject: x\r\n\r\nspam\r\n.\r\n", "QUIT\r\n"]
    replies = namespace.smtp(instance.port, chunks)
    codes = netns.codes(replies)
    assert codes[0] == "554", replies  # the greeting itself refuses the client
    assert "250" not in codes[1:] and "354" not in codes, replies
    assert sum(code == "503" for code in codes) >= len(RECIPIENTS), replies
    time.sleep(2)  # a relayed message would have reached the sink by now
    assert sink.received == [] and instance.queued() == 0
    assert f"reject: CONNECT from unknown[{namespace.client_address}]" in instance.log()


SMUGGLING = {"LF.CRLF": "\n.\r\n", "CRLF.LF": "\r\n.\n", "LF.LF": "\n.\n"}


@pytest.mark.parametrize("ending", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smtp_smuggling_cannot_start_a_second_message(
    start_postfix: Any, sink: Sink, namespace: netns.Namespace, ending: str
) -> None:
    """A trusted client (its address in allowedNetworks) still cannot end DATA with a bare LF."""
    relay = make_relay(relay_spec(sink, allowedNetworks=[f"{namespace.client_address}/32"]))
    instance = start_postfix(relay, listen=namespace.host_address)
    smuggled = (
        "MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<smuggled@example.org>\r\nDATA\r\n"
        "From: ceo@victim.example\r\nSubject: smuggled\r\n\r\npay now\r\n"
    )
    chunks = [
        "EHLO pod.example\r\n",
        "MAIL FROM:<app@pod.example>\r\n",
        "RCPT TO:<ops@example.org>\r\n",
        "DATA\r\n",
        f"From: app@pod.example\r\nSubject: first\r\n\r\nhello{ending}{smuggled}\r\n.\r\n",
        "QUIT\r\n",
    ]
    replies = namespace.smtp(instance.port, chunks)
    [got] = sink.wait_for(1)
    time.sleep(2)  # a second, smuggled message would have arrived by now
    assert len(sink.received) == 1, [r.rcpt_tos for r in sink.received]
    assert got.rcpt_tos == ["ops@example.org"], replies
    assert got.mail_from == f"app@{FQDN}"
    assert b"smuggled@example.org" in got.data  # the would-be commands are plain text in the first message
    assert all("smuggled" not in r for received in sink.received for r in received.rcpt_tos)


@pytest.mark.parametrize(
    "rule",
    [
        {"pattern": r"(.*)@partner\.example", "replacement": "$1@partner.example"},
        {"pattern": "(.*)", "replacement": "$1"},
        {"pattern": ".*", "replacement": "nobody"},
    ],
    ids=["maps to itself", "identity", "no domain"],
)
def test_a_rule_cannot_switch_rewriting_off(start_postfix: Any, sink: Sink, rule: dict[str, str]) -> None:
    """A rule's result outside mailFromFQDN and keepDomains is still rewritten to @mailFromFQDN."""
    instance = start_postfix(make_relay(relay_spec(sink, rewrite={"rules": [rule]})))
    send(instance, "app@partner.example", message("app@partner.example", Sender="app@partner.example"))
    [got] = sink.wait_for(1)
    local = "nobody" if rule["replacement"] == "nobody" else "app"
    assert got.mail_from == f"{local}@{FQDN}"
    assert got.header("From") == got.header("Sender") == f"{local}@{FQDN}"


def test_a_catch_all_rule_leaves_bounces_alone(start_postfix: Any, sink: Sink) -> None:
    """The null sender of a bounce is not an address to rewrite, whatever the rules say."""
    relay = make_relay(relay_spec(sink, rewrite={"rules": [{"pattern": "(.*)", "replacement": "$1"}]}))
    instance = start_postfix(relay)
    send(instance, "root@pod", message("root@pod"), to="reject-me@example.org")
    [bounce] = sink.wait_for(1)
    assert bounce.mail_from == "<>" and bounce.rcpt_tos == [f"root@{FQDN}"]


def test_groups_in_a_rule_work_as_written(start_postfix: Any, sink: Sink) -> None:
    """No group is added around a pattern: $1 is the user's first group (back-references are refused)."""
    rule = {"pattern": r"([a-z])[a-z]-(.*)@(.*)", "replacement": f"double-$1-$2@{FQDN}"}
    instance = start_postfix(make_relay(relay_spec(sink, rewrite={"rules": [rule]})))
    send(instance, "xx-job@pod", message("xx-job@pod"))
    [got] = sink.wait_for(1)
    assert got.mail_from == f"double-x-job@{FQDN}"


def test_sender_headers_are_rewritten_and_reply_headers_kept(start_postfix: Any, sink: Sink) -> None:
    instance = start_postfix(make_relay(relay_spec(sink)))
    kept = {
        "Reply-To": "Team <team@partner.example>",
        "Errors-To": "errors@partner.example",
        "Disposition-Notification-To": "receipts@partner.example",
    }
    rewritten = {"Sender": "app@pod-1", "Resent-From": "resender@pod-1", "Return-Path": "<bounce@pod-1>"}
    msg = message("App <app@pod-1>")
    for name, value in {**kept, **rewritten}.items():
        msg[name] = value
    send(instance, "app@pod-1", msg)
    [got] = sink.wait_for(1)
    assert got.mail_from == f"app@{FQDN}"
    assert got.header("From") == f"App <app@{FQDN}>"
    assert got.header("Sender") == f"app@{FQDN}"
    assert got.header("Resent-From") == f"resender@{FQDN}"
    return_path = got.header("Return-Path")
    assert return_path is None or return_path == f"<bounce@{FQDN}>"
    for name, value in kept.items():
        assert got.header(name) == value, got.data.decode(errors="replace")
    assert b"X-Mailrelay-Kept" not in got.data


def test_an_injected_line_never_reaches_a_postfix_file(start_postfix: Any, sink: Sink) -> None:
    """Even a spec built around validation (the CRD and `parse` refuse this host) cannot write main.cf."""
    relay = make_relay(relay_spec(sink))
    assert relay.spec.relay is not None
    injected = dataclasses.replace(
        relay.spec,
        relay=Relay(
            host="::1%lo\nalways_bcc = spy@collector.test\nsmtpd_authorized_xclient_hosts = static:all",
            port=relay.spec.relay.port,
            tls="None",
        ),
    )
    with pytest.raises(UnsafeValue):
        start_postfix(dataclasses.replace(relay, spec=injected))
    clean = start_postfix(relay)  # the same relay without the injection runs, with no such line
    main_cf = (clean.config_dir / "main.cf").read_text()
    assert "always_bcc" not in main_cf and "xclient" not in main_cf
    send(clean, "root@pod", message("root@pod"))
    [got] = sink.wait_for(1)
    assert got.rcpt_tos == ["ops@example.org"]
