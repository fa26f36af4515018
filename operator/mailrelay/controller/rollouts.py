"""At most N relays rolling at once when the operator itself changed what it renders (an upgrade).

A new operator version may render a different pod (a new sidecar, a changed probe) for every relay
at once; rolled all together, every relay's pods would drain and restart in the same minute. So a
rollout the operator causes waits for a free slot: at most `MAILRELAY_MAX_ROLLING_RELAYS` relays
roll at a time cluster-wide, each slot freed when that relay's workload is ready again, the waiting
relays taken first come, first served. A rollout the relay's owner causes (a spec edit, a Secret
rotated) starts at once, and takes a slot too.

Which it is, is told by the workload's `mailrelay.dev/rendered-by` annotation: the operator version
that wrote it. A pod template to change on a workload another version rendered is the upgrade's doing
(a workload of a version too old to stamp it, too); on one this version rendered, the owner's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from mailrelay.api.names import RENDERED_BY_ANNOTATION
from mailrelay.controller.apply import contains

Key = tuple[str, str]


def operator_caused(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Would writing `desired` roll pods that another operator version rendered?"""
    was = ((live.get("metadata") or {}).get("annotations") or {}).get(RENDERED_BY_ANNOTATION, "")
    template = (live.get("spec") or {}).get("template")
    return was != desired["metadata"]["annotations"][RENDERED_BY_ANNOTATION] and not contains(
        desired["spec"]["template"], template
    )


class RolloutGate:
    """The relays rolling now, and those waiting for a slot, in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._rolling: set[Key] = set()
        self._waiting: OrderedDict[Key, None] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, key: Key) -> bool:
        """May `key` start an operator-caused rollout now? If not, it waits in line."""
        with self._lock:
            if key in self._rolling:
                return True
            ahead = next(iter(self._waiting), key)
            if len(self._rolling) < self.limit and ahead == key:
                self._waiting.pop(key, None)
                self._rolling.add(key)
                return True
            self._waiting.setdefault(key, None)
            return False

    def rolling(self, key: Key) -> None:
        """`key` started a rollout (for any reason): it holds a slot until `done`."""
        with self._lock:
            self._waiting.pop(key, None)
            self._rolling.add(key)

    def done(self, key: Key) -> Key | None:
        """`key` is rolled out (or gone); returns the relay whose turn it is now, if one waits."""
        with self._lock:
            self._rolling.discard(key)
            self._waiting.pop(key, None)
            if len(self._rolling) < self.limit and self._waiting:
                return next(iter(self._waiting))
            return None

    def counts(self) -> tuple[int, int]:
        """(rolling, waiting)."""
        with self._lock:
            return len(self._rolling), len(self._waiting)

    def position(self, key: Key) -> int:
        with self._lock:
            return list(self._waiting).index(key) + 1 if key in self._waiting else 0


def rolling_now(workloads: list[dict[str, Any]], owner: Any) -> list[Key]:
    """The relays whose workload is still rolling out: a new leader's slots are taken from what is, not
    from what an earlier leader remembered. `owner(workload)` names the relay of a workload."""
    found = []
    for workload in workloads:
        meta, spec, status = workload.get("metadata") or {}, workload.get("spec") or {}, workload.get("status") or {}
        wanted = spec.get("replicas", 1)
        settled = status.get("observedGeneration", 0) >= meta.get("generation", 1) and all(
            status.get(field, 0) >= wanted for field in ("updatedReplicas", "readyReplicas")
        )
        if not settled and (key := owner(workload)) is not None:
            found.append(key)
    return found
