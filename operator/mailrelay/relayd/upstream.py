"""One session with the smarthost: connect, TLS (STARTTLS or implicit), AUTH XOAUTH2, then commands.

Every failure becomes a `Refusal`: the SMTP reply Postfix is given instead, always a 4xx when the
fault is ours or the network's, so Postfix keeps the message and retries. A refused login is a 4xx
too (like Postfix's own smtp_sasl_auth_soft_bounce): a bad token is fixed by a refresh, not by
bouncing the mail. The certificate is verified against the smarthost's name with the system's CAs:
a bearer token must not go to whoever answers.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from dataclasses import dataclass

from . import token as tokens

Reply = tuple[int, bytes]


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    tls: str  # "Encrypt" (STARTTLS, required) or "Wrapper" (TLS from the first byte)
    username: str
    helo: str  # the name we greet the smarthost with (mailFromFQDN)
    connect_timeout: float = 30.0
    command_timeout: float = 120.0  # below Postfix's smtp_mail/rcpt/data_init timeouts, so we answer first
    data_timeout: float = 300.0  # the smarthost's answer to the final dot; below smtp_data_done_timeout (600 s)


class Refusal(Exception):
    """The reply to give Postfix instead; `closes` when the session cannot go on."""

    def __init__(self, code: int, text: str, *, closes: bool = True):
        self.code, self.text, self.closes = code, text, closes
        super().__init__(f"{code} {text}")

    @property
    def reply(self) -> Reply:
        return self.code, self.text.encode()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text}".replace("\n", " ")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class Session:
    """A logged-in smarthost session; commands go through as written, replies come back as sent."""

    def __init__(self, host: Smarthost, token: tokens.AccessToken):
        self.host = host
        where = f"smarthost {host.host}:{host.port}"
        context = ssl.create_default_context()
        try:
            if host.tls == "Wrapper":
                self.smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host.host, host.port, local_hostname=host.helo, timeout=host.connect_timeout, context=context
                )
            else:
                self.smtp = smtplib.SMTP(host.host, host.port, local_hostname=host.helo, timeout=host.connect_timeout)
            self.smtp.ehlo()
            if host.tls != "Wrapper":
                if not self.smtp.has_extn("starttls"):
                    raise Refusal(454, f"4.7.0 {where} does not offer STARTTLS; no token is sent in clear text")
                self.smtp.starttls(context=context)
                self.smtp.ehlo()
        except Refusal:
            self.close()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            kind = "TLS with" if isinstance(exc, ssl.SSLError) else "connecting to"
            raise Refusal(451 if "TLS" in kind else 421, f"4.4.1 {kind} {where}: {_describe(exc)}") from None
        try:
            self.smtp.sock.settimeout(host.command_timeout)  # type: ignore[union-attr]
            initial = tokens.xoauth2(host.username, token)
            # A refused XOAUTH2 login first gets a 334 with an error document (RFC 7628 style); the
            # empty answer lets the server finish with its 5xx.
            code, reply = self.smtp.docmd("AUTH", f"XOAUTH2 {initial}")
            del initial
            if code == 334:
                code, reply = self.smtp.docmd("")
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refusal(421, f"4.4.2 {where} dropped the session during login: {_describe(exc)}") from None
        if code != 235:
            self.close()
            text = reply.decode(errors="replace").replace("\n", " ")
            raise Refusal(454, f"4.7.0 {where} refused the OAuth2 login (authentication failed): {code} {text}")

    def features(self) -> list[str]:
        """The smarthost's EHLO keywords worth passing on to Postfix (mail and DSN, not transport)."""
        passed = ("size", "8bitmime", "smtputf8", "dsn", "enhancedstatuscodes")
        features = self.smtp.esmtp_features
        return [f"{name.upper()} {features[name]}".strip() for name in passed if name in features]

    def command(self, line: bytes) -> Reply:
        """Send one command line (without CRLF) and return the smarthost's reply, or raise Refusal."""
        try:
            self.smtp.send(line + b"\r\n")
            return self.smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refusal(421, f"4.4.2 lost the smarthost session: {_describe(exc)}") from None

    def send_data(self, chunk: bytes) -> None:
        """Part of the message as it came from Postfix (dot-stuffed, CRLF), final dot included."""
        try:
            self.smtp.send(chunk)
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refusal(
                451, f"4.4.2 lost the smarthost session while sending the message: {_describe(exc)}"
            ) from None

    def data_reply(self) -> Reply:
        """The smarthost's answer to the final dot. Unknown (timeout, lost session) means the
        message may or may not have been taken: 451 keeps it in Postfix's queue (never lost), and
        the retry may deliver it a second time, the duplicate that SMTP itself allows (RFC 1047)."""
        try:
            self.smtp.sock.settimeout(self.host.data_timeout)  # type: ignore[union-attr]
            reply = self.smtp.getreply()
            self.smtp.sock.settimeout(self.host.command_timeout)  # type: ignore[union-attr]
            return reply
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refusal(
                451,
                f"4.4.2 the smarthost did not confirm the message ({_describe(exc)}); it is kept and retried, "
                "and may arrive twice",
            ) from None

    def quit(self) -> None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.smtp.quit()
        self.close()

    def close(self) -> None:
        smtp = getattr(self, "smtp", None)
        if smtp is not None:
            smtp.close()
