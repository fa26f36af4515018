"""The API server's audit log, read back: who asked for what, which requests wrote, and how long they took.

The control plane writes one JSON event per request (Metadata level, ResponseComplete stage). A phase of
the benchmark is a byte range of that file, so `AuditLog.since(mark)` counts exactly that phase.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from stats import percentile

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def _seconds(start: str, end: str) -> float:
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()


def resource_of(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    name = ref.get("resource", "?")
    return f"{name}/{ref['subresource']}" if ref.get("subresource") else name


def summarize(events: Iterable[dict[str, Any]], user: str) -> dict[str, Any]:
    """Requests of `user`: count, writes (Events and Lease renewals apart: they are not relay state),
    by verb and resource, and the server-side latency of the non-watch requests."""
    requests, watches = 0, 0
    by_kind: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    event_writes = lease_writes = 0
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    for event in events:
        if event.get("stage") != "ResponseComplete" or (event.get("user") or {}).get("username") != user:
            continue
        verb, resource = event.get("verb", "?"), resource_of(event)
        requests += 1
        by_kind[f"{verb} {resource}"] += 1
        codes[(event.get("responseStatus") or {}).get("code", 0)] += 1
        if verb == "watch":
            watches += 1
            continue
        if verb in WRITE_VERBS:
            if resource == "events":
                event_writes += 1
            elif resource == "leases":  # leader election renewing its Lease, not relay state
                lease_writes += 1
            else:
                writes[f"{verb} {resource}"] += 1
        if event.get("requestReceivedTimestamp") and event.get("stageTimestamp"):
            latencies.append(_seconds(event["requestReceivedTimestamp"], event["stageTimestamp"]))
    result: dict[str, Any] = {
        "requests": requests,
        "watches": watches,
        "writes": sum(writes.values()),
        "event_writes": event_writes,
        "lease_writes": lease_writes,
        "writes_by_kind": dict(writes.most_common()),
        "requests_by_kind": dict(by_kind.most_common()),
        "response_codes": {str(k): v for k, v in sorted(codes.items())},
    }
    if latencies:
        result["latency_seconds"] = {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
        }
    return result


def requests_by_user(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """All users' request counts: what else kept the API server busy in the same window."""
    counts: Counter[str] = Counter(
        (e.get("user") or {}).get("username", "?") for e in events if e.get("stage") == "ResponseComplete"
    )
    return dict(counts.most_common())


class AuditLog:
    """A JSON-lines audit log read by byte ranges; `mark()` then `since(mark)` gives one phase's events."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = 0  # marks never go back, even if a tail window held no line end

    def mark(self) -> int:
        """The offset just after the last complete line, so no event is split between two phases."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as log:
            size = log.seek(0, 2)
            start = max(0, size - (1 << 20))
            log.seek(start)
            tail = log.read()
        cut = tail.rfind(b"\n")
        self._last = max(self._last, start + cut + 1 if cut >= 0 else self._last)
        return self._last

    def since(self, start: int, end: int | None = None) -> list[dict[str, Any]]:
        if end is not None and end <= start:
            return []
        with self.path.open("rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(end - start)
        events = []
        for line in data.splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # the last line, still being written
        return events
