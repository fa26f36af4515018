"""The operator's side of OAuth2 smarthost logins: one access token per relay, kept fresh in a Secret.

A pass runs `TokenKeeper.keep(store, relay, previous_status)` right after it observes the relay: the
one step of a pass that makes its own requests (a token endpoint can only be asked, not planned). It
reads the user's Secret (client secret or refresh
token) and the token Secret the operator owns (`mailrelay-<name>-oauth2-token`), lets
mailrelay.oauth.keeper decide, asks the token endpoint when a refresh is due, and writes:

- the token Secret: the access token for the relay pods' XOAUTH2 container (the only container
  that mounts it), its expiry and the keeper's memory (last success, last failure) as annotations;
- the user's Secret, only when the provider rotated the refresh token: the new one goes back under
  `refresh-token`, with the uid and resourceVersion just read as preconditions, and the annotation
  `mailrelay.dev/refresh-token-rotated-at`, so the user sees it changed and why.

One refresh per relay, however many replicas it has (they all read the one Secret), so there is no
herd on the token endpoint. What it returns (`Tokens`) is what the pass needs: a stalling problem,
the status.oauth2 block, the RefreshTokenExpiring condition, the Delivering override while no valid
token exists, events, and when it wants to look again (`next_check`, for a work queue).
Tokens and secrets go to the two Secrets only: never to a log, an event, the status or a metric.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailrelay.api import conditions as cond
from mailrelay.api.oauth2 import OAuth2
from mailrelay.api.secret import REFRESH_TOKEN_KEY, SecretProblem, grant_problem, oauth2_credentials
from mailrelay.api.spec import MailRelay
from mailrelay.controller import metrics
from mailrelay.controller.apply import describe_owner, owned_by
from mailrelay.controller.delivery import Health
from mailrelay.kube.client import ApiError
from mailrelay.oauth import client, keeper
from mailrelay.render.relay import labels, owner_reference
from mailrelay.render.xoauth2 import TOKEN_KEY, token_secret_name

log = logging.getLogger(__name__)
Fetch = Callable[[client.TokenRequest], client.TokenResponse]


class SecretApi(Protocol):
    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Tokens:
    problem: cond.Assessment | None = None
    status: dict[str, Any] | None = None  # status.oauth2; None for a relay without OAuth2
    conditions: tuple[tuple[str, bool, str, str], ...] = ()
    failing: str = ""  # set while no valid token exists and the last refresh failed
    events: list[tuple[str, str, str]] = field(default_factory=list)
    next_check: float | None = None

    def delivering(self, health: Health | None, previous: dict[str, Any]) -> Health | None:
        """Delivering False (TokenRefreshFailed) while mail cannot leave for want of a token."""
        if not self.failing:
            return health
        queue = health.queue if health is not None else dict(previous.get("queue") or {})
        return Health("False", cond.TOKEN_REFRESH_FAILED, self.failing, queue)


def _stalled(reason: str, message: str) -> Tokens:
    return Tokens(problem=cond.Assessment(False, reason, message, stalled=True))


@dataclass
class TokenKeeper:
    """Holds what a test replaces: the token endpoint client and the clock."""

    fetch: Fetch = client.fetch
    clock: Callable[[], float] = time.time

    def keep(self, api: SecretApi, relay: MailRelay, previous: dict[str, Any], require_grant: bool = True) -> Tokens:
        oauth2 = relay.spec.relay.oauth2 if relay.spec.relay else None
        name = f"mailrelay-{relay.name}-oauth2-token"
        if oauth2 is None:
            if previous.get("oauth2"):  # switched back to a password: the last token goes (the empty Secret
                live = api.read("Secret", relay.namespace, name)  # goes with the relay; no delete grant needed)
                if live is not None and owned_by(live, relay.uid or "") and live.get("data"):
                    self._write(api, relay, live, None, {}, clear=True)
            return Tokens()
        assert token_secret_name(relay) == name
        source = api.read("Secret", relay.namespace, oauth2.secret)
        what = f"Secret {oauth2.secret} (spec.relay.oauth2.secretRef)"
        if source is None:
            key = "client-secret" if oauth2.grant == "ClientCredentials" else "refresh-token"
            return _stalled(cond.SECRET_NOT_FOUND, f"{what} does not exist; create it with the key {key}")
        refused = grant_problem(source, relay.name, "spec.relay.oauth2.secretRef") if require_grant else None
        if refused:  # before the content is looked at, as for a password's Secret
            return _stalled(cond.SECRET_NOT_GRANTED, refused)
        try:
            credentials = oauth2_credentials(source, oauth2.grant)
        except SecretProblem as exc:
            return _stalled(cond.SECRET_INCOMPLETE if exc.incomplete else cond.SECRET_INVALID, f"{what}: {exc}")
        live = api.read("Secret", relay.namespace, name)
        if live is not None and not owned_by(live, relay.uid or ""):
            return _stalled(
                cond.TOKEN_SECRET_CONFLICT,
                f"Secret {name} already exists and is not this relay's (owned by {describe_owner(live)}); "
                "left untouched. Remove it: the operator keeps the relay's access token there",
            )
        now = self.clock()
        state = keeper.State.of(live)
        version = keeper.source_version(oauth2, source)
        decision = keeper.decide(state, version, now)
        events: list[tuple[str, str, str]] = []
        if decision.refresh:
            live, events, version = self._refresh(api, relay, oauth2, source, credentials, live, state, version, now)
            state = keeper.State.of(live)
            decision = keeper.decide(state, version, now)
        return self._report(relay, oauth2, state, now, events, decision.next_check)

    def _refresh(
        self,
        api: SecretApi,
        relay: MailRelay,
        oauth2: OAuth2,
        source: dict[str, Any],
        credentials: Any,
        live: dict[str, Any] | None,
        state: keeper.State,
        version: str,
        now: float,
    ) -> tuple[dict[str, Any], list[tuple[str, str, str]], str]:
        """The token Secret as written, events, and the user's Secret's version (new after a rotation)."""
        events: list[tuple[str, str, str]] = []
        try:
            response = self.fetch(keeper.request(oauth2, credentials))
        except client.TokenError as exc:
            metrics.OAUTH2_REFRESHES.labels("refused" if exc.refused else "failed").inc()
            failure = keeper.failure_after(state, version, str(exc), exc.refused, now)
            if failure.attempts == 1:  # once per cause, not once per retry
                events.append(("Warning", cond.TOKEN_REFRESH_FAILED, f"{oauth2.token_url}: {exc}"))
            log.warning("relay %s/%s: access token not refreshed: %s", relay.namespace, relay.name, exc)
            return self._write(api, relay, live, None, {keeper.FAILURE: failure.encode()}), events, version
        metrics.OAUTH2_REFRESHES.labels("ok").inc()
        if response.refresh_token and response.refresh_token != credentials.refresh_token:
            try:
                source = api.apply(_rotated(source, response.refresh_token, now))
                version = keeper.source_version(oauth2, source)
                events.append(
                    (
                        "Normal",
                        "RefreshTokenRotated",
                        f"the provider rotated the refresh token; saved in Secret {oauth2.secret}",
                    )
                )
            except ApiError as exc:  # e.g. the user changed the Secret meanwhile: theirs wins
                events.append(("Warning", "RefreshTokenNotSaved", f"Secret {oauth2.secret}: {exc}"))
        notes = keeper.annotations_after_success(response, version, now, state)
        document = keeper.token_document(response, now)
        return self._write(api, relay, live, document, notes), events, version

    def _write(
        self,
        api: SecretApi,
        relay: MailRelay,
        live: dict[str, Any] | None,
        document: str | None,
        notes: dict[str, str | None],
        clear: bool = False,
    ) -> dict[str, Any]:
        name = f"mailrelay-{relay.name}-oauth2-token"
        annotations = {**((live or {}).get("metadata") or {}).get("annotations", {}), **notes}
        data = {} if clear else dict((live or {}).get("data") or {})
        if document is not None:
            data[TOKEN_KEY] = base64.b64encode(document.encode()).decode()
        meta: dict[str, Any] = {
            "name": name,
            "namespace": relay.namespace,
            "labels": labels(relay),
            "annotations": {k: v for k, v in annotations.items() if v is not None},
            "ownerReferences": [owner_reference(relay)],
        }
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}
        if live is None:
            return api.create(secret)
        meta["uid"], meta["resourceVersion"] = live["metadata"]["uid"], live["metadata"]["resourceVersion"]
        for key, value in notes.items():  # apply drops what it is not given: say so explicitly
            if value is None:
                meta["annotations"].pop(key, None)
        return api.apply(secret)

    def _report(
        self,
        relay: MailRelay,
        oauth2: OAuth2,
        state: keeper.State,
        now: float,
        events: list[tuple[str, str, str]],
        next_check: float,
    ) -> Tokens:
        failure = state.failure
        failing = ""
        if failure is not None and not state.valid(now):
            failing = f"no valid OAuth2 access token, mail waits in the queue: {failure.message}"
        lapse = keeper.lapse(state, oauth2.grant, now)
        status = {
            "tokenSecret": f"mailrelay-{relay.name}-oauth2-token",
            "tokenExpiresAt": keeper.stamp(state.expires_at) if state.expires_at else "",
            "lastRefreshed": keeper.stamp(state.refreshed_at) if state.refreshed_at else "",
            "lastFailure": f"{keeper.stamp(failure.at)}: {failure.message}" if failure else "",
            "refreshTokenExpiresAt": (
                keeper.stamp(state.refresh_token_expires_at) if state.refresh_token_expires_at else ""
            ),
        }
        conditions = ((cond.REFRESH_TOKEN_EXPIRING, lapse.likely, lapse.reason, lapse.message),)
        return Tokens(status=status, conditions=conditions, failing=failing, events=events, next_check=next_check)


def _rotated(source: dict[str, Any], refresh_token: str, now: float) -> dict[str, Any]:
    """The user's Secret with the new refresh token: only if it is still exactly what was read."""
    meta = source["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "annotations": {keeper.ROTATED: keeper.stamp(now)},
        },
        "data": {REFRESH_TOKEN_KEY: base64.b64encode(refresh_token.encode()).decode()},
    }
