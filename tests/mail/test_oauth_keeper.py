"""The operator's TokenKeeper with a fake clock, against the token endpoint double (HTTPS on loopback).

One pass is `keep()` as a reconcile pass calls it; the Secrets live in an in-memory API that keeps
server-side apply's merge and its uid/resourceVersion preconditions for Secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.api.names import SECRET_GRANT_ANNOTATION
from mailrelay.controller import metrics
from mailrelay.controller.delivery import Health
from mailrelay.controller.oauth import TokenKeeper, Tokens
from mailrelay.oauth import client
from mailrelay.oauth.keeper import FAILURE, ROTATED

from support.fake_api import FakeApi
from support.loopback_ca import LoopbackCA
from support.oauth_doubles import SecretsApi, TokenEndpoint
from support.samples import make_relay
from support.wait import present

NS = "apps"
GRANT = {SECRET_GRANT_ANNOTATION: "relay"}  # the user's Secret names the relay that may use it
START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ca(tmp_path: Path) -> LoopbackCA:
    return LoopbackCA(tmp_path / "ca")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(ca: LoopbackCA, clock: Clock) -> Iterator[TokenEndpoint]:
    created = TokenEndpoint(ca, clock=clock)
    yield created
    created.stop()


def relay(endpoint: TokenEndpoint, grant: str = "ClientCredentials", replicas: int = 1) -> Any:
    return make_relay(
        {
            "mailFromFQDN": "apps.example.com",
            "replicas": replicas,
            "relay": {
                "host": "smtp.example.net",
                "authType": "OAuth2",
                "oauth2": endpoint.relay_oauth2(grant, "relay@example.com"),
            },
        }
    )


def user_secret(api: FakeApi, **values: str) -> None:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "oauth", "namespace": NS, "annotations": GRANT},
            "data": data,
        }
    )


def token_of(api: FakeApi) -> dict[str, Any]:
    secret = api.get("Secret", NS, "mailrelay-relay-oauth2-token")
    assert secret is not None
    raw = (secret.get("data") or {}).get("token")
    return json.loads(base64.b64decode(raw)) if raw else {}


def keeper(ca: LoopbackCA, clock: Clock) -> TokenKeeper:
    return TokenKeeper(fetch=lambda request: client.fetch(request, context=ca.client_context()), clock=clock)


def test_client_credentials_token_is_obtained_kept_and_refreshed_at_half_life(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint)
    user_secret(api, **{"client-secret": "client-secret-1"})
    tokens = keep.keep(api, mail_relay, {})
    first = token_of(api)
    assert endpoint.valid(first["accessToken"]) and first["expiresAt"] == START + 3600
    assert endpoint.requests[-1] == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "client-secret-1",
    }
    assert tokens.status is not None and tokens.status["tokenExpiresAt"] == "2027-01-15T09:00:00Z"
    assert tokens.problem is None and not tokens.failing and tokens.next_check == 1800

    clock.now += 1200  # well within its life: no request, nothing written
    writes = len(api.writes)
    assert keep.keep(api, mail_relay, {}).next_check == 600
    assert len(endpoint.requests) == 1 and len(api.writes) == writes

    clock.now += 600  # half its life: a new token, well before the old one expires
    keep.keep(api, mail_relay, {})
    assert len(endpoint.requests) == 2 and token_of(api)["accessToken"] != first["accessToken"]
    assert endpoint.valid(first["accessToken"])  # the old one still works while the pods pick up the new


def test_many_replicas_share_one_refresh(ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, replicas=20)
    user_secret(api, **{"client-secret": "client-secret-1"})
    for _ in range(24):  # a day of passes, one every hour
        keep.keep(api, mail_relay, {})
        clock.now += 3600 / 2
    assert endpoint.grants("client_credentials") == 24  # one per half-life, whatever the replica count


def test_a_rotated_refresh_token_is_written_back_to_the_users_secret(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    endpoint.rotate = True
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, grant="RefreshToken")
    user_secret(api, **{"refresh-token": "refresh-1", "client-secret": "kept"})
    tokens = keep.keep(api, mail_relay, {})
    saved = api.get("Secret", NS, "oauth")
    assert saved is not None
    new = base64.b64decode(saved["data"]["refresh-token"]).decode()
    assert new in endpoint.refresh_tokens and new != "refresh-1"
    assert base64.b64decode(saved["data"]["client-secret"]) == b"kept"
    assert saved["metadata"]["annotations"][ROTATED] == "2027-01-15T08:00:00Z"
    assert [e[1] for e in tokens.events] == ["RefreshTokenRotated"]
    clock.now += 1800
    keep.keep(api, mail_relay, {})  # the next refresh uses the rotated token, and it works
    assert endpoint.requests[-1]["refresh_token"] == new and endpoint.refusals == 0


def test_the_users_change_wins_over_a_rotation(ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint) -> None:
    """The write-back has the resourceVersion it read as a precondition: a concurrent edit is not overwritten."""
    endpoint.rotate = True
    api, mail_relay = SecretsApi(), relay(endpoint, grant="RefreshToken")
    user_secret(api, **{"refresh-token": "refresh-1"})

    def fetch_then_edit(request: client.TokenRequest) -> client.TokenResponse:
        response = client.fetch(request, context=ca.client_context())
        user_secret(api, **{"refresh-token": "typed-by-the-user"})
        return response

    tokens = TokenKeeper(fetch=fetch_then_edit, clock=clock).keep(api, mail_relay, {})
    saved = api.get("Secret", NS, "oauth")
    assert saved is not None and base64.b64decode(saved["data"]["refresh-token"]) == b"typed-by-the-user"
    assert [e[1] for e in tokens.events] == ["RefreshTokenNotSaved"]
    assert token_of(api)["accessToken"]  # the access token itself is still used


def test_a_refusal_backs_off_waits_for_expiry_then_recovers_when_the_secret_is_fixed(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint)
    user_secret(api, **{"client-secret": "client-secret-1"})
    keep.keep(api, mail_relay, {})
    endpoint.revoke_all()
    clock.now += 1800
    refused = keep.keep(api, mail_relay, {})
    assert [e[:2] for e in refused.events] == [("Warning", cond.TOKEN_REFRESH_FAILED)]
    assert (
        "invalid_client" in present(refused.status)["lastFailure"] and not refused.failing
    )  # the old token is still valid
    assert refused.next_check == 60
    clock.now += 30
    again = keep.keep(api, mail_relay, {})
    assert len(endpoint.requests) == 2 and again.events == []  # backing off: no request, no second event
    clock.now += 31
    keep.keep(api, mail_relay, {})
    assert len(endpoint.requests) == 3  # retried, then after 120 s, 240 s, ... up to 15 minutes
    clock.now += 1800  # the last good token has expired: mail waits, and the status says why
    expired = keep.keep(api, mail_relay, {"queue": {"deferred": 2}})
    assert expired.failing.startswith("no valid OAuth2 access token")
    health = present(expired.delivering(Health("True", cond.FLOWING, "no mail is waiting", {"deferred": 0}), {}))
    assert (health.status, health.reason) == ("False", cond.TOKEN_REFRESH_FAILED)
    assert present(expired.delivering(None, {"queue": {"deferred": 2}})).queue == {"deferred": 2}

    endpoint.client_secrets = {"client-secret-2"}  # a new secret from the admin, put in the Secret
    user_secret(api, **{"client-secret": "client-secret-2"})
    fixed = keep.keep(api, mail_relay, {})
    assert not fixed.failing and fixed.status is not None and fixed.status["lastFailure"] == ""
    assert endpoint.valid(token_of(api)["accessToken"])
    secret = api.get("Secret", NS, "mailrelay-relay-oauth2-token")
    assert secret is not None and FAILURE not in secret["metadata"]["annotations"]


def test_a_missing_or_incomplete_secret_stalls_the_relay(ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, grant="RefreshToken")
    tokens = keep.keep(api, mail_relay, {})
    assert tokens.problem is not None and tokens.problem.reason == cond.SECRET_NOT_FOUND and tokens.problem.stalled
    user_secret(api, **{"client-secret": "x"})
    tokens = keep.keep(api, mail_relay, {})
    assert tokens.problem is not None and tokens.problem.reason == cond.SECRET_INCOMPLETE
    assert "refresh-token" in tokens.problem.message and endpoint.requests == []


def test_a_foreign_secret_with_the_token_secrets_name_is_left_alone(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint)
    user_secret(api, **{"client-secret": "client-secret-1"})
    api.put(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mailrelay-relay-oauth2-token", "namespace": NS}}
    )
    tokens = keep.keep(api, mail_relay, {})
    assert tokens.problem is not None and tokens.problem.reason == cond.TOKEN_SECRET_CONFLICT
    assert api.writes == [] and endpoint.requests == []


def test_a_refresh_token_the_provider_says_will_expire_raises_the_warning_condition(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    endpoint.refresh_token_expires_in = 7 * 86400  # Google, for an app still in Testing
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, grant="RefreshToken")
    user_secret(api, **{"refresh-token": "refresh-1"})
    [(kind, value, reason, message)] = keep.keep(api, mail_relay, {}).conditions
    assert (kind, value, reason) == (cond.REFRESH_TOKEN_EXPIRING, True, "RefreshTokenExpiresSoon")
    assert "2027-01-22T08:00:00Z" in message


def test_a_refresh_token_that_has_not_worked_for_months_raises_the_warning(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, grant="RefreshToken")
    user_secret(api, **{"refresh-token": "refresh-1"})
    keep.keep(api, mail_relay, {})
    endpoint.down = True  # e.g. an egress policy blocks the token endpoint
    clock.now += 77 * 86400
    [(_, value, reason, _)] = keep.keep(api, mail_relay, {}).conditions
    assert (value, reason) == (True, "RefreshTokenUnused")


def test_no_token_or_secret_reaches_the_status_events_or_metrics(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    endpoint.rotate = True
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint, grant="RefreshToken")
    user_secret(api, **{"refresh-token": "refresh-1", "client-secret": "client-secret-1"})
    seen: list[Tokens] = [keep.keep(api, mail_relay, {})]
    endpoint.revoke_all()
    clock.now += 4000
    seen.append(keep.keep(api, mail_relay, {}))
    secrets = {"refresh-1", "client-secret-1", *endpoint.issued, *endpoint.refresh_tokens}
    from prometheus_client import generate_latest

    shown = (
        json.dumps([(t.status, t.events, t.conditions, t.failing) for t in seen])
        + generate_latest(metrics.REGISTRY).decode()
    )
    assert not [s for s in secrets if s in shown]


def test_switching_back_to_a_password_empties_the_token_secret(
    ca: LoopbackCA, clock: Clock, endpoint: TokenEndpoint
) -> None:
    api, keep, mail_relay = SecretsApi(), keeper(ca, clock), relay(endpoint)
    user_secret(api, **{"client-secret": "client-secret-1"})
    status = keep.keep(api, mail_relay, {}).status
    plain = make_relay({"mailFromFQDN": "apps.example.com", "relay": {"host": "smtp.example.net"}})
    assert keep.keep(api, plain, {"oauth2": status}) == Tokens()
    assert token_of(api) == {}
