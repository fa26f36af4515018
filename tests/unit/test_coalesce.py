"""A burst of child events runs one more pass per relay, never none after the last event."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from mailrelay.controller.coalesce import Coalescer


def test_requests_while_one_waits_are_folded_into_it_and_a_later_one_runs_again() -> None:
    locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
    coalescer = Coalescer()
    passes: list[str] = []
    running = threading.Event()
    release = threading.Event()

    def slow() -> str:
        passes.append("first")
        running.set()
        release.wait(10)
        return "first"

    first = threading.Thread(target=coalescer.run, args=("relay", locks.__getitem__, slow))
    first.start()
    assert running.wait(10)
    # A pass is under way: the next request waits for the lock; the three after it are folded.
    waiting = threading.Thread(target=coalescer.run, args=("relay", locks.__getitem__, lambda: passes.append("second")))
    waiting.start()
    while len(coalescer) == 0:
        threading.Event().wait(0.01)
    assert [coalescer.run("relay", locks.__getitem__, lambda: passes.append("folded")) for _ in range(3)] == [None] * 3
    # Another relay is not affected.
    assert coalescer.run("other", locks.__getitem__, lambda: "other") == "other"
    release.set()
    first.join(10)
    waiting.join(10)
    assert passes == ["first", "second"] and coalescer.dropped == 3 and len(coalescer) == 0
    # Nothing waits now: the next event gets a pass of its own.
    assert coalescer.run("relay", locks.__getitem__, lambda: "third") == "third"


def test_a_failed_pass_does_not_leave_the_relay_marked_waiting() -> None:
    coalescer = Coalescer()
    lock = threading.Lock()

    def fail() -> None:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError):
        coalescer.run("relay", lambda key: lock, fail)
    assert len(coalescer) == 0
    assert coalescer.run("relay", lambda key: lock, lambda: "again") == "again"
