"""Fold bursts of child events into one reconcile pass per relay.

Creating a relay's children sends an event per child, and the Deployment controller then updates
the Deployment's status several times; each event used to run a full pass (the relay and every
child read again), most of them waiting on the pass before. A pass reads everything it needs only
after it starts, so a pass that has been asked for but has not started yet will see any change
that happens meanwhile: a second request for the same relay can be dropped. Once the waiting pass
starts reading, the next event asks for a pass of its own again, so no change goes unseen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

T = TypeVar("T")


class Coalescer:
    """At most one waiting pass per key, on top of the per-key lock that runs passes one at a time."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: set[str] = set()
        self.dropped = 0  # requests folded into a waiting pass (for tests and the bench)

    def run(self, key: str, hold: Callable[[str], AbstractContextManager[object]], start: Callable[[], T]) -> T | None:
        """Call `start` under `hold(key)`, unless a call for `key` is already waiting for that lock:
        then return None at once, as the waiting one will see what this one would have."""
        with self._guard:
            if key in self._waiting:
                self.dropped += 1
                return None
            self._waiting.add(key)
        waiting = True
        try:
            with hold(key):
                with self._guard:
                    self._waiting.discard(key)
                waiting = False
                return start()
        finally:
            if waiting:
                with self._guard:
                    self._waiting.discard(key)

    def __len__(self) -> int:
        with self._guard:
            return len(self._waiting)


class Queued:
    """Keys with a pass queued but not started: asking again for one of them adds nothing to the queue.
    The queued pass reads everything only once it starts (`started`), so it sees what the dropped
    request would have."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._keys: set[str] = set()
        self.dropped = 0

    def add(self, key: str) -> bool:
        """True when `key` was not queued yet (the caller queues a pass), False when it was."""
        with self._guard:
            if key in self._keys:
                self.dropped += 1
                return False
            self._keys.add(key)
            return True

    def started(self, key: str) -> None:
        with self._guard:
            self._keys.discard(key)
