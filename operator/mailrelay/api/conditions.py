"""Conditions and their reasons: the vocabulary of MailRelay.status, shared by every layer that speaks it.

Conditions follow the kstatus convention: `Ready` summarises, `Reconciling` is True while work is
under way, `Stalled` is True when the relay cannot progress without a change from a person.
`Delivering` says whether mail leaves (it does not change Ready: see controller.delivery).
"""

from __future__ import annotations

from dataclasses import dataclass

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons, CamelCase as Kubernetes wants them.
AVAILABLE = "Available"
SCALED_TO_ZERO = "ScaledToZero"
ROLLING_OUT = "RollingOut"
INVALID_SPEC = "InvalidSpec"
CONFLICT = "ServiceConflict"
CHILD_CONFLICT = "ChildConflict"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_INCOMPLETE = "SecretIncomplete"
QUEUE_STORAGE_IMMUTABLE = "QueueStorageImmutable"
SWITCHING_QUEUE = "SwitchingQueueMode"
ROLLOUT_WAITING = "RolloutWaiting"  # an operator upgrade's new rendering, waiting for its turn to roll
SECRET_INVALID = "SecretInvalid"
SECRET_NOT_GRANTED = "SecretNotGranted"  # the Secret does not name the relay (api.secret.grant_problem)
CHILD_REFUSED = "ChildRefused"
REFUSED_FIELD = "refusedChild"  # the refusal_key() of the object the API server refused last
API_ERROR = "ApiError"
NONE = "AsExpected"


@dataclass(frozen=True)
class Assessment:
    """One reconcile pass's verdict, before it is turned into conditions."""

    ready: bool
    reason: str
    message: str
    stalled: bool = False
    reconciling: bool = False


DELIVERING = "Delivering"

# Reasons of the Delivering condition.
FLOWING = "QueueFlowing"
AUTH_FAILED = "SmarthostAuthFailed"
TLS_FAILED = "SmarthostTLSFailed"
DEFERRED = "DeliveriesDeferred"
NO_METRICS = "MetricsUnavailable"
STOPPED = "NoRelayPods"

# OAuth2 smarthost logins (controller.oauth).
TOKEN_REFRESH_FAILED = "TokenRefreshFailed"  # a Delivering reason: no valid access token, and the refresh failed
REFRESH_TOKEN_EXPIRING = "RefreshTokenExpiring"  # a condition type; True when the refresh token is likely to lapse
TOKEN_SECRET_CONFLICT = "OAuth2TokenSecretConflict"
