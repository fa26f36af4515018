"""One keyed, rate-limited work queue for every trigger: client-go's workqueue, in threads.

Whatever asks for a pass (a relay's watch event, a child's, the resync tick, a new delivery report,
a retry) calls `add(key, why)`. A key waits in the queue at most once however often it is added; a
key being processed is never handed to a second worker, and if it is added meanwhile it is queued
again when the first pass is done, so no change goes unseen. A pass that fails is retried with a
per-key exponential backoff (`add_rate_limited`), whatever triggered it; success `forget`s the key's
failures. `why` is kept from the first add since the key was last taken, for the pass metrics.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self, base_delay: float = 1.0, max_delay: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base_delay, self.max_delay, self.clock = base_delay, max_delay, clock
        self._ready: deque[K] = deque()
        self._why: dict[K, str] = {}  # queued or dirty keys → why they were first added
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: queued again on done()
        self._later: list[tuple[float, int, K, str]] = []  # (when, tie-breaker, key, why)
        self._order = itertools.count()
        self._failures: dict[K, int] = {}
        self._cond = threading.Condition()
        self._closed = False

    def add(self, key: K, why: str = "") -> None:
        with self._cond:
            if self._closed:
                return
            if key in self._processing:
                self._dirty.add(key)
                self._why.setdefault(key, why)
                return
            if key in self._why:
                return  # already waiting
            self._why[key] = why
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float, why: str = "") -> None:
        if delay <= 0:
            self.add(key, why)
            return
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._later, (self.clock() + delay, next(self._order), key, why))
            self._cond.notify()

    def add_rate_limited(self, key: K, why: str = "retry") -> float:
        """Queue `key` again after its backoff (base * 2^failures, at most max); returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self.base_delay * 2 ** min(failures, 30), self.max_delay)
        self.add_after(key, delay, why)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> tuple[K, str] | None:
        """The next key and why it was queued, marked as processing; None on timeout or shutdown."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                self._promote()
                if self._ready:
                    key = self._ready.popleft()
                    self._processing.add(key)
                    return key, self._why.pop(key, "")
                if self._closed:
                    return None
                wait = self._later[0][0] - self.clock() if self._later else None
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait if wait is None else max(wait, 0.0))

    def _promote(self) -> None:
        now = self.clock()
        while self._later and self._later[0][0] <= now:
            _, _, key, why = heapq.heappop(self._later)
            if key in self._processing:
                self._dirty.add(key)
                self._why.setdefault(key, why)
            elif key not in self._why:
                self._why[key] = why
                self._ready.append(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._ready.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys waiting now (not the delayed ones, nor those being processed)."""
        with self._cond:
            return len(self._ready)

    def idle(self) -> bool:
        """Nothing waiting, delayed or being processed."""
        with self._cond:
            self._promote()
            return not (self._ready or self._later or self._processing)
