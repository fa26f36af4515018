"""Is mail leaving the relay? The `Delivering` condition and `status.queue`, from the relay's own exporter.

Each relay pod's metrics sidecar (mailrelay.render.sidecar) reports the queue through Postfix's showq
socket and counts deferred delivery attempts from the log. The exporter does not say *why* mail is
deferred, so when the queue holds deferred mail the operator also reads the last lines of the
relay container's log (the pods/log subresource, read-only) for Postfix's `status=deferred (...)`
reasons, which name a refused smarthost login or a failed TLS handshake.

The condition is separate from `Ready`: a relay whose smarthost refuses it is still up and still
accepting and queueing mail (nothing is lost; it leaves once the cause is fixed), so kstatus and
Argo CD keep it healthy, while `kubectl get mailrelays`, the condition and the alert rules say that
mail is not leaving.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mailrelay.api.conditions import AUTH_FAILED, DEFERRED, FLOWING, NO_METRICS, STOPPED, TLS_FAILED

QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")
AGE_METRIC = "postfix_showq_message_age_seconds"
DEFERRED_ATTEMPTS_METRIC = "postfix_smtp_status_deferred"
# The exporter observes four stages (before queue manager, queue manager, connection, transmission)
# of every delivery attempt in this histogram, each with the same empty `stage` label.
ATTEMPTS_METRIC = "postfix_smtp_delivery_delay_seconds"
STAGES_PER_ATTEMPT = 4
MAX_COUNT = 10**12
MAX_REASON = 300
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

_DEFERRED_LINE = re.compile(r"\bstatus=deferred \((?P<reason>.*)\)\s*$")
_AUTH = re.compile(r"SASL authentication failed|authentication (?:failed|required)|\b535\b", re.IGNORECASE)
_TLS = re.compile(r"\bTLS\b|\bcertificate\b|SSL_connect", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """What one relay pod's exporter reported."""

    queues: dict[str, int]
    oldest_age_bound: float | None  # the upper bound of the age bucket holding the oldest message
    attempts: int  # smarthost delivery attempts since the exporter started
    deferred_attempts: int


@dataclass(frozen=True)
class Health:
    """The Delivering condition and the queue summary for status."""

    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    queue: dict[str, Any] = field(default_factory=dict)


def _count(value: float) -> int:
    """A counter's value as a count; what no exporter would send (NaN, ±Inf, negative, absurd) is 0."""
    return int(value) if value == value and 0 <= value < MAX_COUNT else 0


def parse(text: str) -> Sample | None:
    """Read an exporter's /metrics text; None when it is not Prometheus text. Never raises: the text
    comes from a pod, and a pod must not be able to fail the operator's work."""
    queues = dict.fromkeys(QUEUES, 0)
    buckets: list[tuple[float, float]] = []  # (le, cumulative count), every queue together
    attempts = deferred = 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"{AGE_METRIC}_count" and sample.labels.get("queue") in queues:
                    queues[sample.labels["queue"]] += _count(sample.value)
                elif sample.name == f"{AGE_METRIC}_bucket" and "le" in sample.labels:
                    buckets.append((float(sample.labels["le"]), float(_count(sample.value))))
                elif sample.name == f"{ATTEMPTS_METRIC}_count":
                    attempts += _count(sample.value)
                elif sample.name in (DEFERRED_ATTEMPTS_METRIC, f"{DEFERRED_ATTEMPTS_METRIC}_total"):
                    deferred += _count(sample.value)
    except Exception:  # the parser's many ways to say "not metrics" (ValueError, KeyError, IndexError...)
        return None
    return Sample(queues, _oldest_bound(buckets, sum(queues.values())), attempts // STAGES_PER_ATTEMPT, deferred)


def clean(text: str, limit: int = MAX_REASON) -> str:
    """What may reach a status or an Event from a pod: printable ASCII, at most `limit` characters."""
    printable = _UNPRINTABLE.sub("?", text)
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."


def _oldest_bound(buckets: list[tuple[float, float]], total: int) -> float | None:
    """The smallest bucket bound that holds every queued message, summed over the queues."""
    if not total:
        return None
    per_bound: dict[float, float] = {}
    for bound, count in buckets:
        per_bound[bound] = per_bound.get(bound, 0.0) + count
    return next((bound for bound in sorted(per_bound) if per_bound[bound] >= total), None)


def deferral_reasons(log: str) -> list[str]:
    """Postfix's reasons for deferred deliveries, oldest first, from its log lines (cleaned: they quote the
    smarthost, which may say anything)."""
    return [clean(m.group("reason")) for line in log.splitlines() if (m := _DEFERRED_LINE.search(line))]


def classify(reason: str) -> str:
    if _AUTH.search(reason):
        return AUTH_FAILED
    if _TLS.search(reason):
        return TLS_FAILED
    return DEFERRED


def queue_status(samples: Iterable[Sample]) -> dict[str, Any]:
    samples = list(samples)
    queue: dict[str, Any] = {
        name: sum(s.queues.get(name, 0) for s in samples) for name in ("active", "deferred", "hold")
    }
    queue["incoming"] = sum(s.queues.get("incoming", 0) + s.queues.get("maildrop", 0) for s in samples)
    bounds = [s.oldest_age_bound for s in samples if s.oldest_age_bound is not None]
    # Always present (empty when nothing waits): the status is merge-patched, so a key left out
    # would keep its old value.
    queue["oldestMessageAge"] = (
        "" if not bounds else "more than 3 years" if max(bounds) == float("inf") else f"under {_duration(max(bounds))}"
    )
    return queue


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}" if seconds % size == 0 else f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"


def assess(samples: list[Sample], *, pods: int, reasons: list[str] | None = None) -> Health:
    """The Delivering condition from every ready pod's sample; `pods` is how many were asked.

    `reasons` are recent deferral reasons from the relays' logs, newest last; the newest decides
    between a refused login, a failed TLS handshake and any other deferral.
    """
    if pods == 0:  # the queue as the pods that answered report it: none did
        return Health("Unknown", STOPPED, "no ready relay pod to ask", queue_status(samples))
    if len(samples) < pods:
        return Health(
            "Unknown",
            NO_METRICS,
            f"{pods - len(samples)} of {pods} relay pods did not answer on their metrics port",
            queue_status(samples),
        )
    queue = queue_status(samples)
    if queue["deferred"]:
        latest = (reasons or [""])[-1]
        reason = classify(latest) if latest else DEFERRED
        age = f" (oldest {queue['oldestMessageAge']})" if queue["oldestMessageAge"] else ""
        detail = f": {latest}" if latest else ""
        return Health("False", reason, f"{queue['deferred']} messages deferred{age}{detail}", queue)
    return Health("True", FLOWING, "no mail is waiting for a retry", queue)
