"""The operator's settings: every `MAILRELAY_*` variable (and the pod's downward-API facts), read once.

`Settings.from_environment()` is called at start-up; everything else receives the frozen object,
so nothing reads the process environment later or at import time, and a test builds one directly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailrelay.api.names import LEASE_NAME
from mailrelay.kube.leader import LeaderElection
from mailrelay.version import RELEASED_POSTFIX_IMAGE

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    postfix_image: str = RELEASED_POSTFIX_IMAGE  # for relays whose spec.image is not set
    resync_seconds: float = 60.0
    retry_seconds: float = 1.0  # the first retry delay of a failed pass; doubled per retry
    retry_max_seconds: float = 300.0
    workers: int = 16
    watch_timeout: int = 300
    log_format: str = "json"
    delivery_probe: bool = True  # the resync reads each relay's metrics sidecars (status.queue, Delivering)
    max_rolling_relays: int = 5  # relays rolled at once when an operator upgrade renders their pods anew
    # A Secret a relay names must name the relay back (api.secret.grant_problem); false trusts anyone
    # who may create a MailRelay with every Secret of the namespace, as 0.1.0 did.
    require_secret_grant: bool = True
    leader: LeaderElection = field(default_factory=lambda: LeaderElection(lease_name=LEASE_NAME))

    def retry_delay(self, retry: int) -> float:
        """Exponential backoff for the n-th retry (0-based) of a failed pass."""
        return min(self.retry_seconds * 2 ** min(retry, 30), self.retry_max_seconds)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def number(name: str, default: float, minimum: float = 0.0) -> float:
            raw = env.get(name, "")
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number") from None
            if value <= minimum:
                raise SettingsError(f"{name}={raw!r} must be more than {minimum}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = (env.get(name) or "").lower()
            if not raw:
                return default
            if raw not in ("true", "false", "1", "0", "yes", "no"):
                raise SettingsError(f"{name}={raw!r} must be true or false")
            return raw in ("true", "1", "yes")

        log_format = env.get("MAILRELAY_LOG_FORMAT") or "json"
        if log_format not in ("json", "plain"):
            raise SettingsError(f"MAILRELAY_LOG_FORMAT={log_format!r} must be json or plain")
        try:
            leader = LeaderElection(
                namespace=env.get("POD_NAMESPACE") or _own_namespace(),
                lease_name=env.get("MAILRELAY_LEASE_NAME") or LEASE_NAME,
                pod_name=env.get("POD_NAME") or socket.gethostname(),
                lease_seconds=number("MAILRELAY_LEASE_SECONDS", 15.0),
                renew_deadline_seconds=number("MAILRELAY_RENEW_DEADLINE_SECONDS", 10.0),
                retry_seconds=number("MAILRELAY_LEADER_RETRY_SECONDS", 2.0),
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            postfix_image=env.get("MAILRELAY_POSTFIX_IMAGE") or RELEASED_POSTFIX_IMAGE,
            resync_seconds=number("MAILRELAY_RESYNC_SECONDS", 60.0),
            retry_seconds=number("MAILRELAY_RETRY_SECONDS", 1.0),
            retry_max_seconds=number("MAILRELAY_RETRY_MAX_SECONDS", 300.0),
            workers=int(number("MAILRELAY_WORKERS", 16, 0.5)),
            watch_timeout=int(number("MAILRELAY_WATCH_TIMEOUT", 300, 0.5)),
            log_format=log_format,
            delivery_probe=flag("MAILRELAY_DELIVERY_PROBE", True),
            max_rolling_relays=int(number("MAILRELAY_MAX_ROLLING_RELAYS", 5, 0.5)),
            require_secret_grant=flag("MAILRELAY_REQUIRE_SECRET_GRANT", True),
            leader=leader,
        )


def _own_namespace() -> str:
    """In a pod without POD_NAMESPACE: the service account's namespace; elsewhere `default`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"
