"""The XOAUTH2 relay (mailrelay.relayd) between an SMTP client and the XOAUTH2 smarthost double, on loopback.

What Postfix relies on: 250 only after the smarthost's 250, the smarthost's refusals as they were
sent, and 4xx (never 5xx, never 250) whenever the smarthost's answer is unknown or the token is bad.
"""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailrelay.oauth.client import TokenRequest, fetch
from mailrelay.relayd import token as tokens
from mailrelay.relayd.server import Server
from mailrelay.relayd.upstream import Smarthost

from support.loopback_ca import LoopbackCA
from support.oauth_doubles import TokenEndpoint, XOAuth2Smarthost
from support.smtp_sink import free_port

USER = "relay@example.com"


@dataclass
class Rig:
    ca: LoopbackCA
    endpoint: TokenEndpoint
    smarthost: XOAuth2Smarthost
    server: Server
    token_file: Path

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def issue(self, expires_in: int | None = None) -> str:
        if expires_in is not None:
            self.endpoint.expires_in = expires_in
        response = fetch(
            TokenRequest(self.endpoint.url, "ClientCredentials", "client-1", "", client_secret="client-secret-1"),
            context=self.ca.client_context(),
        )
        self.token_file.write_text(
            json.dumps({"accessToken": response.access_token, "expiresAt": int(time.time()) + response.expires_in})
        )
        return response.access_token

    def send(self, to: str = "ops@example.org") -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(*self.address, timeout=30) as smtp:
            return smtp.sendmail("app@apps.example.com", [to], b"Subject: hi\r\n\r\nhello\r\n")


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    ca = LoopbackCA(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # the relay trusts the system's CAs: here, the test CA
    endpoint = TokenEndpoint(ca)
    smarthost = XOAuth2Smarthost(endpoint, ca, USER).start()
    token_file = tmp_path / "token"
    host = Smarthost("127.0.0.1", smarthost.port, "Encrypt", USER, "apps.example.com", data_timeout=3)
    server = Server(("127.0.0.1", free_port()), host, token_file, time.time)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield Rig(ca, endpoint, smarthost, server, token_file)
    server.shutdown()
    server.server_close()
    smarthost.stop()
    endpoint.stop()


def test_a_message_is_relayed_with_the_token_and_250_comes_from_the_smarthost(rig: Rig) -> None:
    token = rig.issue()
    assert rig.send() == {}  # smtplib: no recipient refused
    [got] = rig.smarthost.wait_for(1)
    assert got.rcpt_tos == ["ops@example.org"] and b"hello" in got.data
    assert [(login.user, login.token, login.accepted) for login in rig.smarthost.logins] == [(USER, token, True)]
    assert rig.smarthost.malformed == []


def test_the_smarthosts_refusal_of_a_recipient_is_passed_on_as_sent(rig: Rig) -> None:
    rig.issue()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        rig.send(to="reject-me@example.org")
    assert refused.value.recipients["reject-me@example.org"] == (
        550,
        b"5.1.1 <reject-me@example.org>: no such user here",
    )
    assert rig.smarthost.received == []


@pytest.mark.parametrize("state", ["missing", "expired", "malformed"])
def test_no_usable_token_is_a_temporary_refusal_before_anything_is_sent(rig: Rig, state: str) -> None:
    if state == "expired":
        rig.issue(expires_in=20)  # within the relay's 30-second margin
    elif state == "malformed":
        rig.token_file.write_text("{not json")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        rig.send()
    assert refused.value.smtp_code == 454
    assert b"OAuth2 access token" in refused.value.smtp_error
    assert rig.smarthost.logins == []  # nothing was offered to the smarthost


def test_a_revoked_token_is_a_temporary_refusal_that_says_authentication_failed(rig: Rig) -> None:
    token = rig.issue()
    rig.endpoint.revoke_all()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        rig.send()
    assert refused.value.smtp_code == 454  # Postfix keeps the mail and retries, as with smtp_sasl_auth_soft_bounce
    error = refused.value.smtp_error
    text = error.decode() if isinstance(error, bytes) else error
    assert "authentication failed" in text and "535" in text and token not in text
    assert rig.smarthost.received == []


def test_a_smarthost_that_never_answers_the_final_dot_gets_451_not_250(rig: Rig) -> None:
    rig.issue()

    async def slow(server: object, session: object, envelope: object) -> str:
        import asyncio

        await asyncio.sleep(6)  # longer than the relay's data timeout (3 s here)
        return "250 OK"

    rig.smarthost.handle_DATA = slow  # type: ignore[method-assign]
    with pytest.raises(smtplib.SMTPDataError) as refused:
        rig.send()
    assert refused.value.smtp_code == 451 and b"may arrive twice" in refused.value.smtp_error


def test_the_token_is_read_again_for_each_session(rig: Rig) -> None:
    first = rig.issue()
    rig.send()
    second = rig.issue()
    rig.send()
    assert [login.token for login in rig.smarthost.logins] == [first, second]


def test_the_xoauth2_string_has_the_documented_shape() -> None:
    import base64

    raw = base64.b64decode(
        tokens.xoauth2("someuser@example.com", tokens.AccessToken("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", 0))
    )
    assert raw == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    assert "ya29" not in repr(tokens.AccessToken("ya29.secret", 0))
