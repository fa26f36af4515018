"""The access token as the operator writes it, and the SASL XOAUTH2 string built from it.

The operator keeps one JSON document, {"accessToken": ..., "expiresAt": <unix seconds>}, in a
Secret mounted into this container only; the kubelet swaps the whole file atomically, so one read
sees one token and its expiry together. It is read again for every Postfix session, so a refreshed
token is used from the next session on. Nothing here logs or formats a token: errors say what is
wrong with the file, never what is in it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# A token this close to its expiry is not offered: the smarthost might see it expired mid-login.
EXPIRY_MARGIN_SECONDS = 30


class TokenUnavailable(Exception):
    """No usable access token; the message is safe to log and to hand to Postfix."""


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float

    def __repr__(self) -> str:  # never printed by accident
        return f"AccessToken(<hidden>, expires_at={self.expires_at})"


def read(path: Path, clock: Callable[[], float] = time.time) -> AccessToken:
    """The current token, or TokenUnavailable (missing, unreadable, malformed or expired)."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise TokenUnavailable("no OAuth2 access token yet: the operator has not obtained one") from None
    except (OSError, ValueError):
        raise TokenUnavailable("the OAuth2 access token file is unreadable") from None
    value, expires = (document.get("accessToken"), document.get("expiresAt")) if isinstance(document, dict) else (0, 0)
    if not isinstance(value, str) or not value or not value.isprintable() or not isinstance(expires, int | float):
        raise TokenUnavailable("the OAuth2 access token file is malformed")
    if expires - EXPIRY_MARGIN_SECONDS <= clock():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        raise TokenUnavailable(f"the OAuth2 access token expired at {stamp}: the operator could not refresh it")
    return AccessToken(value, float(expires))


def xoauth2(user: str, token: AccessToken) -> str:
    """The initial client response of SASL XOAUTH2, base64 as sent after `AUTH XOAUTH2`."""
    raw = f"user={user}\x01auth=Bearer {token.value}\x01\x01"
    return base64.b64encode(raw.encode()).decode("ascii")
