"""DKIM on the real mail path: Postfix and Debian's OpenDKIM started by the image's entrypoint, mail
to an aiosmtpd sink, each signature checked by dkimpy against the TXT record the operator publishes
in the status (served through dkimpy's DNS hook, so no DNS query leaves the machine).
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
from typing import Any

import pytest

from support.dkim_mail import (
    KEPT_INSIDE,
    KEPT_OUTSIDE,
    dkim_relay,
    dns_from_status,
    keys_for,
    signatures,
    verify_all,
)
from support.mail import FQDN, message, send
from support.postfix_harness import HarnessPostfix
from support.smtp_sink import Sink


@pytest.mark.parametrize(
    ("envelope", "header", "want_from"),
    [
        ("root", "root", f"root@{FQDN}"),
        ("root@6ba2d5764050", "root@6ba2d5764050", f"root@{FQDN}"),
        ("worker@6ba2d5764050", None, f"worker@{FQDN}"),  # Postfix adds the From before OpenDKIM sees it
        (f"jobs@{KEPT_INSIDE}", f"Jobs <jobs@{KEPT_INSIDE}>", f"Jobs <jobs@{KEPT_INSIDE}>"),
    ],
)
def test_rewritten_and_kept_senders_are_signed_and_verify(
    start_postfix: Any, sink: Sink, envelope: str, header: str | None, want_from: str
) -> None:
    relay = dkim_relay(sink)
    keys = keys_for(relay)
    instance = start_postfix(relay, dkim_keys=keys)
    send(instance, envelope, message(header, "signed body\n.leading dot\n"))
    [got] = sink.wait_for(1)
    assert got.header("From") == want_from  # the rewrite happened, and the signature covers its result
    [signature] = signatures(got)
    assert "d=example.com" in signature and "s=s1" in signature and "a=rsa-sha256" in signature
    assert verify_all(got.data, dns_from_status(relay, keys)) == [True]


def test_mail_from_the_containers_own_sendmail_is_signed(start_postfix: Any, sink: Sink) -> None:
    """The pickup path (non_smtpd_milters): `mail` and cron inside the relay container."""
    relay = dkim_relay(sink)
    keys = keys_for(relay)
    instance: HarnessPostfix = start_postfix(relay, dkim_keys=keys)
    sent = subprocess.run(
        ["sendmail", "-C", str(instance.config_dir), "-f", "root", "ops@example.org"],
        input=message("root", "from inside\n").as_bytes(),
        env=instance.env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    [got] = sink.wait_for(1)
    assert got.header("From") == f"root@{FQDN}"
    assert verify_all(got.data, dns_from_status(relay, keys)) == [True]


def test_a_bounce_the_relay_writes_is_signed(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink)
    keys = keys_for(relay)
    send(start_postfix(relay, dkim_keys=keys), "root", message("root"), to="reject-me@example.org")
    [bounce] = sink.wait_for(1)
    assert bounce.mail_from == "<>" and bounce.header("From") == f"Mail Delivery System <MAILER-DAEMON@{FQDN}>"
    assert verify_all(bounce.data, dns_from_status(relay, keys)) == [True]


def test_a_tampered_body_or_from_fails_verification(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink)
    keys = keys_for(relay)
    send(start_postfix(relay, dkim_keys=keys), "root", message("root", "pay 10 EUR\n"))
    [got] = sink.wait_for(1)
    dns = dns_from_status(relay, keys)
    assert verify_all(got.data, dns) == [True]
    assert verify_all(got.data.replace(b"pay 10 EUR", b"pay 99 EUR"), dns) == [False]
    assert verify_all(got.data.replace(f"root@{FQDN}".encode(), b"ceo@mail.example.com"), dns) == [False]


def test_a_kept_domain_outside_the_signing_domain_is_sent_unsigned(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink)
    send(start_postfix(relay, dkim_keys=keys_for(relay)), f"noreply@{KEPT_OUTSIDE}", message(f"noreply@{KEPT_OUTSIDE}"))
    [got] = sink.wait_for(1)
    assert got.header("From") == f"noreply@{KEPT_OUTSIDE}"
    assert signatures(got) == []


def test_ed25519_relays_sign_twice_with_keys_only_the_signer_reads(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink, key_type="Ed25519")
    keys = keys_for(relay)
    instance: HarnessPostfix = start_postfix(relay, dkim_keys=keys)
    for file in keys:  # each key is the signer's alone: Postfix's daemons cannot read it
        path = instance.opendkim_dir / "keys" / file
        assert (path.stat().st_mode & 0o777, path.owner()) == (0o400, "opendkim")
        assert (
            subprocess.run(
                ["runuser", "-u", "postfix", "--", "cat", str(path)], capture_output=True, check=False
            ).returncode
            != 0
        )
        assert (
            subprocess.run(
                ["runuser", "-u", "opendkim", "--", "cat", str(path)], capture_output=True, check=False
            ).stdout
            == keys[file]
        )
    send(instance, "root@6ba2d5764050", message("root@6ba2d5764050"))
    [got] = sink.wait_for(1)
    found = signatures(got)
    assert sorted("a=ed25519-sha256" in s for s in found) == [False, True]
    assert any("s=s1-ed25519" in s for s in found) and any("s=s1;" in s.replace(" ", "") for s in found)
    assert verify_all(got.data, dns_from_status(relay, keys)) == [True, True]


def test_without_opendkim_mail_is_refused_not_sent_unsigned(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink)
    instance: HarnessPostfix = start_postfix(relay, dkim_keys=keys_for(relay))
    assert instance.run_script("probe.sh", "live").returncode == 0
    pid = int((instance.opendkim_dir / "rsa.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    live = instance.run_script("probe.sh", "live")
    assert live.returncode == 1 and "OpenDKIM (rsa) is not running" in live.stderr
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        send(instance, "root", message("root"))
    assert refused.value.smtp_code == 451  # a temporary refusal: the client keeps the message and retries
    assert sink.received == []


def test_a_missing_key_file_stops_the_start_with_a_clear_message(start_postfix: Any, sink: Sink) -> None:
    relay = dkim_relay(sink, key_type="Ed25519")
    keys = keys_for(relay)
    del keys["ed25519.private"]
    instance: HarnessPostfix = start_postfix(relay, dkim_keys=keys, run=False)
    result = instance.run_script("entrypoint.sh", timeout=30)
    assert result.returncode == 1
    assert "the DKIM key Secret has no ed25519.private" in result.stderr
