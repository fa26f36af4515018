"""The session fixtures' one way to run a real cluster (tools/controlplane, tools/node) in a folder of its own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest


class Startable(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


T = TypeVar("T", bound=Startable)


@contextmanager
def started(make: Callable[[Path], T], prefix: str, what: str) -> Iterator[T]:
    """`make(folder)` in a new temporary folder, started; stopped afterwards and its folder removed (kept with
    MAILRELAY_KEEP_TEST_DIRS). A failed build fails the test, never skips it: `what` is needed."""
    from controlplane import BuildError

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = make(folder)
    try:
        cluster.start()
    except BuildError as error:
        pytest.fail(f"the real {what} is needed: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        if not os.environ.get("MAILRELAY_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
