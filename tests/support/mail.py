"""Mail as the host-Postfix tiers send it: a client address inside allowedNetworks, a message, a relay spec."""

from __future__ import annotations

import smtplib
import time
import uuid
from email.message import EmailMessage
from typing import Any

from support.postfix_harness import HarnessPostfix
from support.smtp_sink import Sink

POD = "127.0.0.5"
OUTSIDER = "127.0.0.9"
FQDN = "mail.example.com"


def relay_spec(sink: Sink, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mailFromFQDN": FQDN,
        "allowedNetworks": ["127.0.0.4/30"],
        "relay": {"host": "127.0.0.1", "port": sink.port, "tls": "None"},
    }
    relay = extra.pop("relay", None)
    if relay:
        spec["relay"].update(relay)
    spec.update(extra)
    return spec


def message(sender_header: str | None, body: str = "hello from a pod\n", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    if sender_header is not None:
        msg["From"] = sender_header
    msg["To"] = "ops@example.org"
    msg["Subject"] = "test"
    msg["Message-ID"] = f"<{uuid.uuid4()}@test>"
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    return msg


def send(
    instance: HarnessPostfix, envelope_from: str, msg: EmailMessage, *, source: str = POD, to: str = "ops@example.org"
) -> None:
    with smtplib.SMTP(instance.listen, instance.port, source_address=(source, 0), timeout=30) as smtp:
        smtp.send_message(msg, from_addr=envelope_from, to_addrs=[to])


def wait_for_log(instance: Any, text: str, timeout: float = 30) -> str:
    """Postfix's log once it mentions `text` (a delivery attempt's outcome)."""
    deadline = time.monotonic() + timeout
    while text not in instance.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = instance.log()
    assert text in log, f"{text!r} not in the Postfix log:\n{log[-3000:]}"
    return log


def by_hand(
    address: tuple[str, int],
    credentials: dict[str, str] | None,
    sender: str,
    header_from: str,
    source: str | None = None,
) -> tuple[int, str]:
    """Speak SMTP as a tenant who took its relay's login (STARTTLS, checking nothing): the reply to
    its mail, (250, "") when it was accepted."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(*address, source_address=(source, 0) if source else None, timeout=30) as smtp:
        smtp.starttls(context=context)
        if credentials is not None:
            smtp.login(credentials["username"], credentials["password"])
        try:
            smtp.sendmail(sender, ["someone@example.org"], message(header_from).as_bytes())
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients["someone@example.org"]
            return code, text.decode()
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
    return 250, ""
