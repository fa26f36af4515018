"""When to refresh an access token, and what to write after a refresh: decisions only, no I/O.

Everything the keeper remembers is on the token Secret it owns (annotations beside the `token`
key), so a decision needs only the relay, the user's Secret, that Secret and the time: a restarted
or newly elected operator picks up where the last one stopped, and two decisions from the same
inputs agree. The token is refreshed at half its life and at least REFRESH_MARGIN before it expires
(the kubelet takes up to a minute or two to show a changed Secret in the pod); at once when the
user's Secret or the OAuth2 settings change; after failures, with a backoff, so a refused
credential does not hammer the provider.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailrelay.api.oauth2 import OAuth2
from mailrelay.api.secret import OAuth2Credentials
from mailrelay.oauth.client import TokenRequest, TokenResponse

TOKEN_KEY = "token"
SOURCE = "mailrelay.dev/oauth2-source"  # the user's Secret (uid/resourceVersion) and settings the token came from
EXPIRES = "mailrelay.dev/oauth2-expires-at"
REFRESHED = "mailrelay.dev/oauth2-refreshed-at"
REFRESH_TOKEN_EXPIRES = "mailrelay.dev/oauth2-refresh-token-expires-at"
FAILURE = "mailrelay.dev/oauth2-failure"  # JSON: attempts, at, refused, message, for the source it failed with
ROTATED = "mailrelay.dev/refresh-token-rotated-at"  # on the user's Secret, when the operator wrote a new one

REFRESH_MARGIN = 10 * 60
MIN_BACKOFF, MAX_BACKOFF = 60, 15 * 60
# A refresh token unused this long is likely to lapse: Microsoft's inactivity limit is 90 days
# (Google's six months); the keeper uses it every half hour, so this means refreshes keep failing.
UNUSED_WARNING = 76 * 86400
EXPIRY_WARNING = 14 * 86400


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str | None) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def source_version(oauth2: OAuth2, secret: dict[str, Any]) -> str:
    """Identity of the inputs a token was obtained with: the Secret's version and the settings."""
    meta = secret.get("metadata") or {}
    settings = json.dumps([oauth2.token_url, oauth2.client_id, oauth2.grant, oauth2.scope])
    return (
        f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}/{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
    )


@dataclass(frozen=True)
class Failure:
    attempts: int
    at: float
    refused: bool
    message: str
    source: str

    def encode(self) -> str:
        return json.dumps(
            {
                "attempts": self.attempts,
                "at": stamp(self.at),
                "refused": self.refused,
                "message": self.message,
                "source": self.source,
            },
            sort_keys=True,
        )

    @classmethod
    def decode(cls, text: str | None) -> Failure | None:
        try:
            raw = json.loads(text or "")
            return cls(
                int(raw["attempts"]),
                epoch(raw["at"]) or 0.0,
                bool(raw["refused"]),
                str(raw["message"]),
                str(raw["source"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def retry_at(self) -> float:
        return self.at + min(MAX_BACKOFF, MIN_BACKOFF * 2 ** max(0, self.attempts - 1))


@dataclass(frozen=True)
class State:
    """What the token Secret says: the current token's expiry, the last success, the last failure."""

    source: str = ""
    expires_at: float | None = None
    refreshed_at: float | None = None
    refresh_token_expires_at: float | None = None
    failure: Failure | None = None

    @classmethod
    def of(cls, token_secret: dict[str, Any] | None) -> State:
        notes = ((token_secret or {}).get("metadata") or {}).get("annotations") or {}
        return cls(
            source=notes.get(SOURCE, ""),
            expires_at=epoch(notes.get(EXPIRES)),
            refreshed_at=epoch(notes.get(REFRESHED)),
            refresh_token_expires_at=epoch(notes.get(REFRESH_TOKEN_EXPIRES)),
            failure=Failure.decode(notes.get(FAILURE)),
        )

    def valid(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at > now

    def refresh_due(self, now: float) -> float:
        """When the current token should be replaced: half its life, REFRESH_MARGIN before expiry at the latest."""
        if self.expires_at is None or self.refreshed_at is None:
            return now
        half = self.refreshed_at + (self.expires_at - self.refreshed_at) / 2
        return min(half, self.expires_at - REFRESH_MARGIN)


@dataclass(frozen=True)
class Decision:
    refresh: bool
    why: str
    next_check: float  # seconds until the keeper should look again


def decide(state: State, source: str, now: float) -> Decision:
    """Refresh now, or when to look again."""
    if state.source != source:
        if state.failure is not None and state.failure.source == source and now < state.failure.retry_at:
            return Decision(False, "backing off after a failed first attempt", state.failure.retry_at - now)
        return Decision(True, "no token yet for these credentials and settings", 0)
    due = state.refresh_due(now)
    if now < due:
        return Decision(False, "the token is fresh", due - now)
    if state.failure is not None and state.failure.source == source and now < state.failure.retry_at:
        return Decision(False, "backing off after a failed refresh", state.failure.retry_at - now)
    return Decision(True, "the token is due for a refresh", 0)


def request(oauth2: OAuth2, credentials: OAuth2Credentials) -> TokenRequest:
    return TokenRequest(
        url=oauth2.token_url,
        grant=oauth2.grant,
        client_id=oauth2.client_id,
        scope=oauth2.scope,
        client_secret=credentials.client_secret,
        refresh_token=credentials.refresh_token,
    )


def token_document(response: TokenResponse, now: float) -> str:
    """The `token` key the XOAUTH2 relay reads (mailrelay.relayd.token)."""
    return json.dumps({"accessToken": response.access_token, "expiresAt": int(now + response.expires_in)})


def annotations_after_success(
    response: TokenResponse, source: str, now: float, previous: State
) -> dict[str, str | None]:
    """None removes an annotation (the failure) in a merge."""
    rt_expiry = now + response.refresh_token_expires_in if response.refresh_token_expires_in else None
    if rt_expiry is None and not response.refresh_token:
        rt_expiry = previous.refresh_token_expires_at  # the same refresh token keeps its known limit
    return {
        SOURCE: source,
        EXPIRES: stamp(now + response.expires_in),
        REFRESHED: stamp(now),
        REFRESH_TOKEN_EXPIRES: stamp(rt_expiry) if rt_expiry else None,
        FAILURE: None,
    }


def failure_after(previous: State, source: str, message: str, refused: bool, now: float) -> Failure:
    earlier = previous.failure if previous.failure and previous.failure.source == source else None
    return Failure((earlier.attempts if earlier else 0) + 1, now, refused, message, source)


@dataclass(frozen=True)
class Lapse:
    """Whether the refresh token is likely to stop working soon, and why."""

    likely: bool
    reason: str
    message: str


def lapse(state: State, grant: str, now: float) -> Lapse:
    if grant != "RefreshToken":
        return Lapse(False, "AsExpected", "")
    if state.refresh_token_expires_at is not None and state.refresh_token_expires_at - now < EXPIRY_WARNING:
        return Lapse(
            True,
            "RefreshTokenExpiresSoon",
            f"the provider said the refresh token expires at {stamp(state.refresh_token_expires_at)}; "
            "consent again and put the new refresh token in the Secret (for Google, an app in Testing "
            "gets 7-day refresh tokens: publish it)",
        )
    if state.refreshed_at is not None and now - state.refreshed_at > UNUSED_WARNING:
        return Lapse(
            True,
            "RefreshTokenUnused",
            f"the refresh token has not worked since {stamp(state.refreshed_at)}; providers drop unused "
            "refresh tokens (Microsoft after 90 days)",
        )
    return Lapse(False, "AsExpected", "")
