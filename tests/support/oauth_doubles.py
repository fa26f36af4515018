"""Test doubles for OAuth2 smarthosts, both on loopback: a token endpoint and an XOAUTH2 smarthost.

`TokenEndpoint` is an HTTPS token endpoint speaking RFC 6749 as Microsoft's and Google's do: the
client-credentials and refresh-token grants, `expires_in`, refresh-token rotation (Microsoft
returns a new refresh token on every use) and refusals (`invalid_client`, `invalid_grant`). It
remembers every access token it issued. `XOAuth2Smarthost` is an aiosmtpd smarthost that requires
STARTTLS (or implicit TLS) and AUTH XOAUTH2, checks the SASL string byte for byte, and accepts only
a token the endpoint issued, unexpired and unrevoked; a refused login gets Google's 334 error
document first, then 535. Emulators of the providers, labelled as such: no real provider is reachable.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import AuthResult

from mailrelay.kube.client import ApiError

from support.fake_api import FakeApi
from support.loopback_ca import LoopbackCA
from support.smtp_sink import Sink, free_port


@dataclass
class Issued:
    token: str
    client_id: str
    grant: str
    expires_at: float
    revoked: bool = False


class TokenEndpoint:
    """An HTTPS token endpoint at `url` (path /<tenant>/oauth2/v2.0/token, any tenant)."""

    def __init__(
        self,
        ca: LoopbackCA,
        *,
        client_id: str = "client-1",
        client_secret: str = "client-secret-1",
        refresh_token: str = "refresh-1",
        expires_in: int = 3600,
        rotate: bool = False,
        refresh_token_expires_in: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client_id, self.expires_in, self.rotate = client_id, expires_in, rotate
        self.client_secrets = {client_secret}
        self.refresh_tokens = {refresh_token}
        self.refresh_token_expires_in = refresh_token_expires_in
        self.clock = clock
        self.issued: dict[str, Issued] = {}
        self.requests: list[dict[str, str]] = []  # every form posted (secrets included: the test owns them)
        self.refusals = 0
        self.down = False  # answer 503, as an outage would
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, body = endpoint.answer(self.path, self.headers.get("Content-Type", ""), form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.socket = ca.server_context().wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/tenant-1/oauth2/v2.0/token"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str, content_type: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(form)
            if self.down:
                return 503, {"error": "temporarily_unavailable"}
            if not path.endswith("/oauth2/v2.0/token") or content_type != "application/x-www-form-urlencoded":
                return 400, {"error": "invalid_request", "error_description": "wrong path or content type"}
            grant = form.get("grant_type")
            if form.get("client_id") != self.client_id:
                return self._refuse(401, "invalid_client", "unknown client")
            if grant == "client_credentials":
                if form.get("client_secret") not in self.client_secrets:
                    return self._refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            elif grant == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return self._refuse(400, "invalid_grant", "AADSTS70000: the refresh token was revoked.")
            else:
                return self._refuse(400, "unsupported_grant_type", str(grant))
            token = "tok-" + secrets.token_urlsafe(24)
            self.issued[token] = Issued(token, self.client_id, str(grant), self.clock() + self.expires_in)
            body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token}
            if grant == "refresh_token" and self.rotate:
                new = "refresh-" + secrets.token_urlsafe(16)
                self.refresh_tokens = {new}  # the old one is spent (stricter than Microsoft, on purpose)
                body["refresh_token"] = new
            if grant == "refresh_token" and self.refresh_token_expires_in is not None:
                body["refresh_token_expires_in"] = self.refresh_token_expires_in
            return 200, body

    def _refuse(self, status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
        self.refusals += 1
        return status, {"error": error, "error_description": description}

    def valid(self, token: str) -> bool:
        with self._lock:
            issued = self.issued.get(token)
            return issued is not None and not issued.revoked and issued.expires_at > self.clock()

    def revoke_all(self) -> None:
        """The admin revoked the app's consent: no issued token works, nor do the credentials."""
        with self._lock:
            for issued in self.issued.values():
                issued.revoked = True
            self.client_secrets, self.refresh_tokens = set(), set()

    def relay_oauth2(self, grant: str, username: str) -> dict[str, Any]:
        """spec.relay.oauth2 of a Custom provider at this endpoint, its client secret in the Secret `oauth`."""
        return {
            "provider": "Custom",
            "tokenURL": self.url,
            "clientID": self.client_id,
            "grant": grant,
            "secretRef": {"name": "oauth"},
            "username": username,
        }

    def grants(self, grant: str) -> int:
        return sum(1 for form in self.requests if form.get("grant_type") == grant)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Login:
    user: str
    token: str
    accepted: bool


class XOAuth2Smarthost(Sink):
    """A Sink that takes mail only after AUTH XOAUTH2 with a token `endpoint` issued to `user`."""

    def __init__(
        self, endpoint: TokenEndpoint, ca: LoopbackCA, user: str, *, implicit: bool = False, host: str = "127.0.0.1"
    ):
        context = ca.server_context()
        if implicit:
            super().__init__(host=host, port=free_port(host), implicit_tls=context)
        else:
            super().__init__(host=host, port=free_port(host), tls_context=context)
        self.endpoint, self.user = endpoint, user
        self.logins: list[Login] = []
        self.malformed: list[bytes] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        blob = args[1] if len(args) > 1 else ""
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            raw = b""
        parts = raw.split(b"\x01")
        ok_shape = len(parts) == 4 and parts[2:] == [b"", b""] and parts[0].startswith(b"user=")
        ok_shape = ok_shape and parts[1].startswith(b"auth=Bearer ")
        if not ok_shape:
            self.malformed.append(raw)
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed XOAUTH2 string")
        user, token = parts[0][5:].decode(), parts[1][12:].decode()
        accepted = user == self.user and self.endpoint.valid(token)
        with self._lock:
            self.logins.append(Login(user, token, accepted))
        if accepted:
            return AuthResult(success=True, handled=False, auth_data=user)
        # Google's way: a 334 with a JSON error document, then 535 after the client's empty answer.
        await server.challenge_auth(
            json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        )
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    def _auth_options(self) -> dict[str, Any]:
        """AUTH always required, over TLS (STARTTLS or implicit), by this class's own `auth_XOAUTH2`."""
        return {"auth_required": True, "auth_require_tls": True}


class SecretsApi(FakeApi):
    """Server-side apply for Secrets: preconditions checked, data and annotations merged."""

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        live = self.get("Secret", meta["namespace"], meta["name"]) if obj["kind"] == "Secret" else None
        if live is None:
            return super().apply(obj)
        for key in ("uid", "resourceVersion"):
            if key in meta and meta[key] != live["metadata"][key]:
                raise ApiError(409, f"apply Secret {meta['name']}: the object has been modified")
        merged = copy.deepcopy(live)
        merged["data"] = {**(live.get("data") or {}), **(obj.get("data") or {})}
        if "token" in (live.get("data") or {}) and "token" not in (obj.get("data") or {}) and "labels" in meta:
            merged["data"].pop("token")  # our own Secret: the fields we stop giving are removed
        merged["metadata"]["annotations"] = {
            **(live["metadata"].get("annotations") or {}),
            **(meta.get("annotations") or {}),
        }
        if "labels" in meta:  # the operator's own Secret: apply states its whole annotation set
            merged["metadata"]["annotations"] = dict(meta.get("annotations") or {})
        self.writes.append(("apply", "Secret", meta["name"]))
        return self.put(merged)
