"""The operator's own Prometheus metrics, in one registry served on --metrics-port.

One registry of our own (not prometheus_client's global one) so the names the dashboard and the
alert rules may use are exactly the ones listed here, and a test can read them all.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from mailrelay.kube.leader import Leadership

PREFIX = "mailrelay_operator"
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

PASSES = Counter(
    f"{PREFIX}_reconcile_passes", "Reconcile passes started, by what triggered them.", ["trigger"], registry=REGISTRY
)
ERRORS = Counter(
    f"{PREFIX}_reconcile_errors",
    "Reconcile passes that failed with an error, by trigger.",
    ["trigger"],
    registry=REGISTRY,
)
DURATION = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "How long one reconcile pass took, by trigger.",
    ["trigger"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter(
    f"{PREFIX}_api_retries", "Passes that failed on an API error and are retried with backoff.", registry=REGISTRY
)
STATUS_WRITES = Counter(
    f"{PREFIX}_status_writes", "MailRelay status patches (none while nothing changes).", registry=REGISTRY
)
RELAYS = Gauge(
    f"{PREFIX}_relays",
    "Relays by condition (Ready, Stalled, Delivering), status and reason, as of the last resync.",
    ["condition", "status", "reason"],
    registry=REGISTRY,
)
SMARTHOSTS = Gauge(
    f"{PREFIX}_cluster_smarthosts",
    "ClusterSmarthosts by condition (Ready, Stalled, Delivering), status and reason, as of the last resync.",
    ["condition", "status", "reason"],
    registry=REGISTRY,
)
ROLLOUTS = Gauge(
    f"{PREFIX}_rollouts",
    "Relays rolling out now, and waiting for their turn after an operator upgrade (at most "
    "MAILRELAY_MAX_ROLLING_RELAYS roll at once).",
    ["state"],
    registry=REGISTRY,
)
LEADER = Gauge(
    f"{PREFIX}_leader",
    "1 while this replica holds the leader Lease and reconciles, 0 while it stands by.",
    registry=REGISTRY,
)
PROBE_FAILURES = Counter(
    f"{PREFIX}_relay_scrape_failures", "Relay pods whose metrics could not be read.", registry=REGISTRY
)
OAUTH2_REFRESHES = Counter(
    f"{PREFIX}_oauth2_token_refreshes",
    "OAuth2 access token requests to the providers' token endpoints, by result (ok, refused, failed).",
    ["result"],
    registry=REGISTRY,
)
OAUTH2_EXPIRY = Gauge(
    f"{PREFIX}_oauth2_token_expiry_timestamp_seconds",
    "When each OAuth2 relay's current access token expires (Unix time), as of the last resync.",
    ["namespace", "relay"],
    registry=REGISTRY,
)
COUNTED_CONDITIONS = ("Ready", "Stalled", "Delivering", "RefreshTokenExpiring")


def trigger_label(trigger: str) -> str:
    """kopf's reasons (create, update, resume), resync, and one `child` for every child event."""
    return "child" if trigger.endswith(" event") else trigger


@contextmanager
def timed_pass(trigger: str) -> Iterator[None]:
    label = trigger_label(trigger)
    PASSES.labels(label).inc()
    started = time.monotonic()
    try:
        yield
    except BaseException:
        ERRORS.labels(label).inc()
        raise
    finally:
        DURATION.labels(label).observe(time.monotonic() - started)


def count_relays(statuses: Iterable[dict[str, Any] | None], gauge: Gauge = RELAYS) -> None:
    """Replace the per-condition counts in `gauge` (relays, or ClusterSmarthosts) with these statuses."""
    tally: Tally[tuple[str, str, str]] = Tally()
    for status in statuses:
        for condition in (status or {}).get("conditions") or []:
            if condition.get("type") in COUNTED_CONDITIONS:
                tally[(condition["type"], condition.get("status", ""), condition.get("reason", ""))] += 1
    gauge.clear()
    for labels, count in tally.items():
        gauge.labels(*labels).set(count)


def track_tokens(relays: Iterable[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
    """Replace the access token expiries with these (relay, status) pairs' status.oauth2."""
    OAUTH2_EXPIRY.clear()
    for relay, status in relays:
        expires = ((status or {}).get("oauth2") or {}).get("tokenExpiresAt")
        if expires:
            moment = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            OAUTH2_EXPIRY.labels(relay["metadata"]["namespace"], relay["metadata"]["name"]).set(moment.timestamp())


def follow_leadership(leadership: Leadership) -> None:
    """The leader gauge reads the Leadership at each scrape: it is never stale after a lost Lease."""
    LEADER.set_function(lambda: 1.0 if leadership.active() else 0.0)


def serve(port: int) -> None:
    """/metrics on every address at `port`, from a daemon thread."""
    start_http_server(port, registry=REGISTRY)


def names() -> set[str]:
    """Every series name this registry can expose (with _total, _bucket, ... suffixes)."""
    found: set[str] = set()
    for family in REGISTRY.collect():
        found.add(family.name)
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(family.type, ())
        found.update(family.name + suffix for suffix in suffixes)
    return found
