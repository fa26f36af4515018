"""`spec.recipients.allowDomains` refuses every recipient outside the list, bare postmaster included.

Issue 23: smtpd accepts a recipient that parses to a bare `postmaster` before any restriction (RFC
5321 3.6; smtpd_check_rcpt() returns early, and no parameter turns that off), so `RCPT
TO:<postmaster>` passed the allow-list and was delivered to postmaster@mailFromFQDN. With an
allow-list the relay now rewrites, with smtpd_command_filter, every RCPT TO that is not a plain
local@domain into a recipient the allow-list refuses. Real Postfix, clients from a pod address.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from mailrelay.render import postfix

from support.mail import FQDN, POD, message, relay_spec, send
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink

ALLOWED = ["example.org"]
# Every form smtpd parses to the bare name postmaster: each passed the allow-list before.
BARE_POSTMASTER = [
    "<postmaster>",
    "<Postmaster>",
    "postmaster",
    " <postmaster> NOTIFY=NEVER",
    '<"postmaster">',
    "<post\\master>",
    '<"post\\master">',
    "<@relay.example.org:postmaster>",
    "<postmaster(x@example.org)>",
    "<postmaster (x@example.org)>",
]
# Not plain local@domain: refused the same way, though smtpd would not have exempted them.
NOT_PLAIN = ["<root>", '<"x@example.org">', "<postmaster@>", '<"post"master>']
PLAIN_ALLOWED = {
    "<x@example.org>": "x@example.org",
    "x@example.org": "x@example.org",
    "<x@sub.example.org> NOTIFY=NEVER": "x@sub.example.org",
    '<"john smith"@example.org>': '"john smith"@example.org',
}


def rcpt(instance: HarnessPostfix, argument: str, *, data: str | None = None) -> str:
    """One SMTP session from a pod's address with RCPT TO `argument` exactly as written; the RCPT reply,
    or with `data` the reply to the message's final dot."""
    with socket.create_connection((instance.listen, instance.port), source_address=(POD, 0), timeout=30) as sock:
        reader = sock.makefile("rb")

        def command(line: str) -> str:
            sock.sendall(line.encode() + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply.decode().strip()

        assert reader.readline().startswith(b"220")
        assert command("EHLO pod").startswith("250")
        assert command("MAIL FROM:<app@pod>").startswith("250")
        reply = command(f"RCPT TO:{argument}")
        if data is not None and reply.startswith("250"):
            assert command("DATA").startswith("354")
            reply = command(f"{data}\r\n.")
        command("QUIT")
        return reply


@pytest.fixture
def guarded(start_postfix: Any, sink: Sink) -> HarnessPostfix:
    instance: HarnessPostfix = start_postfix(make_relay(relay_spec(sink, recipients={"allowDomains": ALLOWED})))
    return instance


@pytest.mark.parametrize("argument", BARE_POSTMASTER + NOT_PLAIN)
def test_bare_postmaster_and_unplain_recipients_are_refused(guarded: HarnessPostfix, argument: str) -> None:
    reply = rcpt(guarded, argument)
    assert reply.startswith("550 5.1.3") and postfix.UNPLAIN_RECIPIENT in reply, reply
    assert "only plain local@domain recipients" in reply


def test_plain_recipients_in_the_list_still_pass(guarded: HarnessPostfix, sink: Sink) -> None:
    for argument in PLAIN_ALLOWED:
        assert rcpt(guarded, argument).startswith("250"), argument
    send(guarded, "app@pod", message("app@pod"), to='"john smith"@example.org')
    [got] = sink.wait_for(1)
    assert got.rcpt_tos == ['"john smith"@example.org']
    assert rcpt(guarded, "<postmaster@example.net>").startswith("550 5.7.1")


def test_nothing_reaches_postmaster_at_the_relays_domain(guarded: HarnessPostfix, sink: Sink) -> None:
    for argument in BARE_POSTMASTER:
        assert rcpt(guarded, argument, data="Subject: hello postmaster\r\n\r\nhi").startswith("550")
    send(guarded, "app@pod", message("app@pod"), to="ops@example.org")
    sink.wait_for(1)
    time.sleep(1)  # a postmaster message that slipped through would be delivered by now
    assert [r.rcpt_tos for r in sink.received] == [["ops@example.org"]]
    assert f"postmaster@{FQDN}" not in guarded.log()


def test_without_the_command_filter_postfix_exempts_postmaster(start_postfix: Any, sink: Sink) -> None:
    """The control: the same relay minus smtpd_command_filter accepts <postmaster> and delivers it to
    postmaster@mailFromFQDN, so the refusal above is the filter's doing, not another restriction's."""
    relay = make_relay(relay_spec(sink, recipients={"allowDomains": ALLOWED}))
    main = postfix.main_cf(relay.spec)
    unfiltered = "".join(line for line in main.splitlines(keepends=True) if "smtpd_command_filter" not in line)
    assert unfiltered != main
    instance: HarnessPostfix = start_postfix(relay, extra_files={postfix.MAIN_CF: unfiltered})
    reply = rcpt(instance, "<postmaster>", data="Subject: to the postmaster\r\n\r\nhello")
    assert reply.startswith("250 2.0.0 Ok: queued"), reply
    [got] = sink.wait_for(1)
    assert got.rcpt_tos == [f"postmaster@{FQDN}"]


def test_without_an_allow_list_postmaster_is_accepted_as_rfc_5321_asks(start_postfix: Any, sink: Sink) -> None:
    instance: HarnessPostfix = start_postfix(make_relay(relay_spec(sink)))
    assert postfix.COMMAND_FILTER not in postfix.config_files(make_relay(relay_spec(sink)).spec)
    assert rcpt(instance, "<postmaster>").startswith("250")
