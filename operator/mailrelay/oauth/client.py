"""The token endpoint client (RFC 6749): one POST per request, standard library only.

Client credentials (Microsoft 365's service principal) and refresh-token grants (Gmail, delegated
Microsoft 365). No redirects are followed, so a client secret goes to the configured https URL and
nowhere else. HTTPS_PROXY is honoured. Errors carry the provider's error code and description
(which never echo the secret) and whether the provider refused the credentials (fixed only by a
person) or the request merely failed (retried).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT = 10.0
MAX_BODY = 64 * 1024
DEFAULT_EXPIRES_IN = 600  # a response without expires_in: assume a short life and refresh early
REFUSALS = {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}


@dataclass(frozen=True)
class TokenRequest:
    url: str
    grant: str  # "ClientCredentials" or "RefreshToken"
    client_id: str
    scope: str
    client_secret: str = ""
    refresh_token: str = ""

    def __repr__(self) -> str:
        return f"TokenRequest({self.url!r}, {self.grant}, client_id={self.client_id!r}, <secrets hidden>)"

    def form(self) -> dict[str, str]:
        fields = {"client_id": self.client_id}
        if self.grant == "ClientCredentials":
            fields.update(grant_type="client_credentials", client_secret=self.client_secret)
        else:
            fields.update(grant_type="refresh_token", refresh_token=self.refresh_token)
            if self.client_secret:  # confidential clients (Google's, Microsoft web apps) send it too
                fields["client_secret"] = self.client_secret
        if self.scope:
            fields["scope"] = self.scope
        return fields


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    refresh_token: str = ""  # set when the provider handed out a new one (rotation)
    refresh_token_expires_in: int | None = None

    def __repr__(self) -> str:
        return f"TokenResponse(<hidden>, expires_in={self.expires_in}, rotated={bool(self.refresh_token)})"


class TokenError(Exception):
    """A failed request; `refused` when the provider turned the credentials down."""

    def __init__(self, message: str, *, refused: bool):
        self.refused = refused
        super().__init__(message)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(request: TokenRequest, *, context: ssl.SSLContext | None = None, timeout: float = TIMEOUT) -> TokenResponse:
    """POST the grant and read the token, or raise TokenError."""
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=context or ssl.create_default_context())
    )
    body = urllib.parse.urlencode(request.form()).encode()
    http = urllib.request.Request(
        request.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        with opener.open(http, timeout=timeout) as answer:
            return parse(answer.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        raise _http_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TokenError(f"token endpoint unreachable: {reason}", refused=False) from None


def _http_error(exc: urllib.error.HTTPError) -> TokenError:
    try:
        document = json.loads(exc.read(MAX_BODY))
    except (ValueError, OSError):
        document = {}
    error = str(document.get("error", "")) if isinstance(document, dict) else ""
    description = str(document.get("error_description", "")) if isinstance(document, dict) else ""
    description = " ".join(description.split())[:300]
    text = f"HTTP {exc.code} {error}: {description}".rstrip(": ") if error else f"HTTP {exc.code}"
    return TokenError(f"token endpoint refused: {text}", refused=error in REFUSALS or exc.code in (400, 401, 403))


def parse(raw: bytes) -> TokenResponse:
    try:
        document = json.loads(raw)
    except ValueError:
        raise TokenError("token endpoint answered something that is not JSON", refused=False) from None
    if not isinstance(document, dict):
        raise TokenError("token endpoint answered a JSON document that is not an object", refused=False)
    token, kind = document.get("access_token"), str(document.get("token_type", "Bearer"))
    if not isinstance(token, str) or not token or not token.isprintable() or " " in token:
        raise TokenError("token endpoint answered without a usable access_token", refused=False)
    if kind.lower() != "bearer":
        raise TokenError(f"token endpoint issued a {kind[:20]!r} token, not a Bearer token", refused=False)
    refresh = document.get("refresh_token")
    return TokenResponse(
        access_token=token,
        expires_in=_seconds(document.get("expires_in")) or DEFAULT_EXPIRES_IN,
        refresh_token=refresh if isinstance(refresh, str) and refresh.isprintable() else "",
        refresh_token_expires_in=_seconds(document.get("refresh_token_expires_in")),
    )


def _seconds(value: Any) -> int | None:
    """Providers send integers, some as strings (older Azure AD endpoints)."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None
