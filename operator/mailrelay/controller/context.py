"""The operator's state, in one object handed to every kopf handler through kopf's memo.

The API client, the settings, the namespaces served, the leadership and the per-relay locks live
here rather than in module globals, so a test builds a Context with a fake API and a second
operator in the same process would not share anything by accident.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mailrelay.controller import metrics
from mailrelay.controller.client import OperatorApi
from mailrelay.controller.coalesce import Coalescer, Queued
from mailrelay.controller.reconcile import DeliveryProbe, Outcome, now, reconcile
from mailrelay.controller.settings import Settings
from mailrelay.kube.informer import ChildIndex, IndexedApi
from mailrelay.kube.leader import Leadership

log = logging.getLogger("mailrelay")


class KeyedLocks:
    """One lock per key, kept only while a thread holds or waits for it, so the table stays as
    small as the number of passes under way however many relays have come and gone."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


@dataclass
class Context:
    api: OperatorApi
    settings: Settings
    leadership: Leadership
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    child_passes: Coalescer = field(default_factory=Coalescer)  # a burst of child events: one waiting pass
    index: ChildIndex | None = None  # the children in memory (mailrelay.kube.informer), while this replica leads
    child_pool: ThreadPoolExecutor | None = None  # runs the passes after child events, while this replica leads
    child_queue: Queued = field(default_factory=Queued)
    clock: Callable[[], str] = now  # the time written into conditions
    release: Callable[[], None] = lambda: None  # hands the leader Lease back (LeaderElector.release)
    probe: DeliveryProbe | None = None  # asks each relay's metrics how delivery goes, on the resync only

    def run_pass(self, body: dict[str, Any], trigger: str) -> Outcome:
        """Reconcile one relay, one pass at a time per relay, and post what a user should know.

        A replica that cannot be sure it leads does not start a pass (and the API's write guard
        stops one that is under way when the lease runs out). The resync's passes also read the
        relay's delivery health (`probe`); the others keep the last one.
        """
        self.leadership.check()
        with self.locks.hold(body["metadata"]["uid"]):
            return self.run_held(body, trigger)

    def run_held(self, body: dict[str, Any], trigger: str) -> Outcome:
        """The pass of `run_pass`, with the relay's lock already held by the caller."""
        api = IndexedApi(self.api, self.index) if self.index is not None else self.api
        probe = self.probe if trigger == "resync" else None
        with metrics.timed_pass(trigger):
            outcome = reconcile(
                api,
                body,
                clock=self.clock(),
                default_image=self.settings.postfix_image,
                probe=probe,
                require_grant=self.settings.require_secret_grant,
            )
        for kind, reason, message in outcome.events:
            # Posted directly rather than with kopf.event(): the resync loop runs outside kopf's
            # handler context, where kopf's event queue is not reachable.
            self.api.post_event(body, kind, reason, message, self.leadership.identity)
        if (outcome.children and outcome.children.writes) or outcome.status_written:
            log.info(
                "reconciled %s/%s (%s): %s; %s",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                trigger,
                outcome.assessment.reason,
                ", ".join(f"{c.action} {c.kind}/{c.name}" for c in outcome.children.children)
                if outcome.children
                else "no children",
            )
        return outcome
