"""The DKIM signature covers the reply headers as they leave (Reply-To and the other kept ones).

Issue 23: Reply-To was hidden under a private name while OpenDKIM signed and restored afterwards, so
`h=` left it out and anyone in transit could change it, or add one, without breaking the signature.
Real Postfix and OpenDKIM through the entrypoint, each message checked by dkimpy against the record
the status publishes.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import pytest

from mailrelay.render.headers import KEPT_HEADERS, KEPT_PREFIX

from support.dkim_mail import dkim_relay, dns_from_status, keys_for, signatures, verify_all
from support.mail import FQDN, message, send
from support.smtp_sink import Received, Sink

KEPT = {
    # long enough to be folded on the way: the signature is over the unfolded value
    "Reply-To": "Billing Team of the Partner <billing@partner.example>, Second Desk <desk@partner.example>",
    "Errors-To": "errors@partner.example",
    "Disposition-Notification-To": "receipts@partner.example",
    "Mail-Followup-To": "list@partner.example",
    "Resent-Reply-To": "resent@partner.example",
}


def signed_names(received: Received) -> list[str]:
    [signature] = signatures(received)
    tags = re.search(r"(?:^|;)h=([^;]+)", "".join(signature.split()))
    assert tags is not None
    return [name.lower() for name in tags.group(1).split(":")]


def add_header(data: bytes, line: str) -> bytes:
    """`line` appended to the header section, as someone in transit would add it."""
    return re.sub(rb"\r?\n\r?\n", lambda m: b"\r\n" + line.encode() + m.group(0), data, count=1)


def with_attachment(msg: EmailMessage) -> EmailMessage:
    """A forwarded message inside: its headers are its own and must leave untouched."""
    inner = EmailMessage()
    inner["From"] = "someone@partner.example"
    inner["Reply-To"] = "inner@partner.example"
    inner["Subject"] = "forwarded"
    inner.set_content("inner body\n")
    msg.add_attachment(inner)
    return msg


def sent(start_postfix: Any, sink: Sink, msg: EmailMessage) -> tuple[Received, Any]:
    relay = dkim_relay(sink)
    keys = keys_for(relay)
    send(start_postfix(relay, dkim_keys=keys), "app@pod-1", msg)
    [got] = sink.wait_for(1)
    return got, dns_from_status(relay, keys)


def test_kept_headers_leave_as_written_and_are_signed(start_postfix: Any, sink: Sink) -> None:
    msg = message("App <app@pod-1>", **{name: value for name, value in KEPT.items()})
    msg[f"{KEPT_PREFIX}Reply-To"] = "forged@evil.example"  # a client's copy is dropped, never renamed
    got, dns = sent(start_postfix, sink, with_attachment(msg))
    parsed = email.message_from_bytes(got.data, policy=email.policy.compat32)
    assert got.header("From") == f"App <app@{FQDN}>"
    for name, value in KEPT.items():
        assert len(parsed.get_all(name) or []) == 1, name
        assert " ".join(str(parsed[name]).split()) == " ".join(value.split()), name
    assert KEPT_PREFIX.encode() not in got.data and b"forged@evil.example" not in got.data
    parts = got.message.get_payload()
    assert isinstance(parts, list) and isinstance(parts[1], EmailMessage)
    inner = parts[1].get_content()
    assert inner["Reply-To"] == "inner@partner.example" and KEPT_PREFIX not in str(inner)
    names = signed_names(got)
    for name in KEPT:
        assert names.count(name.lower()) == 2, (name, names)  # signed, and once more: none can be added
    assert verify_all(got.data, dns) == [True]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.replace(b"billing@partner.example", b"billing@evil.example"),
        lambda d: d.replace(b"Errors-To: errors@partner.example", b"Errors-To: errors@evil.example"),
        lambda d: add_header(d, "Reply-To: phish@evil.example"),
    ],
    ids=["Reply-To changed", "Errors-To changed", "a second Reply-To added"],
)
def test_changing_or_adding_a_reply_header_breaks_the_signature(start_postfix: Any, sink: Sink, tamper: Any) -> None:
    got, dns = sent(start_postfix, sink, message("app@pod-1", **KEPT))
    assert verify_all(got.data, dns) == [True]
    changed = tamper(got.data)
    assert changed != got.data
    assert verify_all(changed, dns) == [False]


def test_a_reply_header_cannot_be_added_to_a_message_that_had_none(start_postfix: Any, sink: Sink) -> None:
    got, dns = sent(start_postfix, sink, message("app@pod-1"))
    assert set(KEPT_HEADERS) & {k for k, _ in email.message_from_bytes(got.data).items()} == set()
    assert verify_all(got.data, dns) == [True]
    for name in KEPT_HEADERS:
        added = add_header(got.data, f"{name}: phish@evil.example")
        assert verify_all(added, dns) == [False], name
