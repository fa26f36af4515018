"""An aiosmtpd sink that records every message, optionally requiring AUTH or offering STARTTLS."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from controlplane.processes import free_port as free_port  # the one port picker, for the doubles too


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth: tuple[str, str] | None

    def header(self, name: str) -> str | None:
        """A header exactly as it arrived (unfolded), without the email package's normalising."""
        value = email.message_from_bytes(self.data)[name]
        return None if value is None else str(value)

    @property
    def message(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # the default policy's class
        return message


@dataclass
class Sink:
    """Collects what Postfix delivers; `credentials` makes AUTH mandatory."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    credentials: tuple[str, str] | None = None
    tls_context: ssl.SSLContext | None = None  # STARTTLS, required
    implicit_tls: ssl.SSLContext | None = None  # SMTPS: TLS from the first byte
    received: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("reject"):
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        login = (auth.login.decode(), auth.password.decode()) if isinstance(auth, LoginPassword) else None
        with self._lock:
            content = envelope.content
            assert isinstance(content, bytes)  # no decode_data: the bytes as they came
            self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), content, login))
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        attempt = (auth_data.login.decode(), auth_data.password.decode())
        self.auth_attempts.append(attempt)
        return AuthResult(success=attempt == self.credentials, handled=False, auth_data=auth_data)

    def _auth_options(self) -> dict[str, Any]:
        """The Controller's AUTH options: with `credentials`, AUTH is required (over STARTTLS when it is offered)."""
        if not self.credentials:
            return {}
        return {
            "authenticator": self._authenticate,
            "auth_required": True,
            "auth_require_tls": self.tls_context is not None,
        }

    def start(self) -> Self:
        kwargs = self._auth_options()
        if self.tls_context:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        if self.implicit_tls:
            kwargs.update(ssl_context=self.implicit_tls)
        self._controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=10, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s) at the sink, got {len(self.received)}")
