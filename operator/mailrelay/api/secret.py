"""The Secrets a relay refers to: who may use one, and what makes a smarthost login usable.

A relay acts with the operator's rights, which include reading every Secret of the namespace; so
`relay.authSecretRef` and `dkim.keySecretRef` would let anyone who may create a MailRelay (but not
read Secrets) send with another team's smarthost login or sign with another relay's DKIM key. A
referenced Secret must name the relays allowed to use it in its annotation SECRET_GRANT_ANNOTATION,
as a Gateway API ReferenceGrant does across namespaces: whoever may write the Secret decides. The
check runs before the content is looked at, so a relay learns nothing about a Secret not granted to it.

The entrypoint writes `[host]:port username:password` as one line of Postfix's password map, so a
username with ':' or any line break or control character would split or corrupt that line. Such a
Secret is refused up front (SecretInvalid) instead of producing a pod that cannot start. Messages
name the key and the fault, never the value.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from mailrelay.api.checker import quote
from mailrelay.api.names import SECRET_GRANT_ANNOTATION

KEYS = ("username", "password")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretProblem(ValueError):
    """Why a Secret cannot be used; `incomplete` when keys are missing or empty."""

    def __init__(self, message: str, *, incomplete: bool = False):
        self.incomplete = incomplete
        super().__init__(message)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password by accident
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def _values(secret: dict[str, Any]) -> dict[str, str]:
    """Both `data` (base64, as stored) and `stringData` (as written in a manifest) are read."""
    values: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretProblem(f"key {key} is not base64-encoded UTF-8 text") from None
    for key, text in (secret.get("stringData") or {}).items():
        values[key] = str(text)
    return values


def credentials(secret: dict[str, Any]) -> Credentials:
    """The login in `secret`, as the entrypoint will read it (trailing line breaks dropped)."""
    values = {key: value.rstrip("\n") for key, value in _values(secret).items()}
    missing = [key for key in KEYS if not values.get(key, "").strip()]
    if missing:
        raise SecretProblem(f"lacks a non-empty {' and '.join(missing)}", incomplete=True)
    username, password = values["username"], values["password"]
    if ":" in username or _CONTROL.search(username):
        raise SecretProblem("username must not contain ':', a line break or a control character")
    if _CONTROL.search(password):
        raise SecretProblem("password must not contain a line break or a control character")
    return Credentials(username, password)


CLIENT_SECRET_KEY = "client-secret"
REFRESH_TOKEN_KEY = "refresh-token"


@dataclass(frozen=True)
class OAuth2Credentials:
    """What the token endpoint needs from the user's Secret: a client secret and/or a refresh token."""

    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return "OAuth2Credentials(<hidden>)"


def oauth2_credentials(secret: dict[str, Any], grant: str) -> OAuth2Credentials:
    """ClientCredentials needs client-secret; RefreshToken needs refresh-token (client-secret when
    the client is confidential, as Google's are). Trailing line breaks are dropped, as for passwords."""
    values = {key: value.strip() for key, value in _values(secret).items()}
    needed = CLIENT_SECRET_KEY if grant == "ClientCredentials" else REFRESH_TOKEN_KEY
    if not values.get(needed):
        raise SecretProblem(f"lacks a non-empty {needed} (the {grant} grant needs it)", incomplete=True)
    for key in (CLIENT_SECRET_KEY, REFRESH_TOKEN_KEY):
        if _CONTROL.search(values.get(key, "")) or " " in values.get(key, ""):
            raise SecretProblem(f"{key} must not contain a space, a line break or a control character")
    return OAuth2Credentials(values.get(CLIENT_SECRET_KEY, ""), values.get(REFRESH_TOKEN_KEY, ""))


def granted_relays(secret: dict[str, Any]) -> frozenset[str]:
    """The relay names the Secret's annotation lists ("*" for every relay of its namespace)."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SECRET_GRANT_ANNOTATION)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def grant_problem(secret: dict[str, Any], relay: str, field: str) -> str | None:
    """Why relay `relay` may not use `secret` through `field` (its spec path), or None when it may."""
    granted = granted_relays(secret)
    if "*" in granted or relay in granted:
        return None
    name = (secret.get("metadata") or {}).get("name", "")
    names = ",".join(sorted(granted | {relay}))
    command = f"kubectl annotate --overwrite secret {name} {SECRET_GRANT_ANNOTATION}={quote(names)[1:-1]}"
    if not granted:
        listed = f"has no annotation {SECRET_GRANT_ANNOTATION}"
    else:
        listed = f"lets only {quote(', '.join(sorted(granted)))} use it ({SECRET_GRANT_ANNOTATION})"
    return (
        f"Secret {name} ({field}) {listed}: whoever may edit the Secret decides which relays use it; "
        f"to allow this one: {command} (a comma-separated list of names, or *)"
    )
