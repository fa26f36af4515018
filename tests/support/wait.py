"""Waiting for what another process or server does: the one poller of the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `check` returns something truthy (and return it), or fail with the last error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, KeyError, TypeError, IndexError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


def present(value: T | None, what: str = "the object") -> T:
    """`value`, which must be there: an AssertionError (which `eventually` retries) when it is None."""
    assert value is not None, f"{what} is missing"
    return value
