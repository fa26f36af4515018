"""The unit tier is pure, and this makes it stay so: no process, no socket, no name lookup.

Every unit test runs with the calls that would start a process or reach a network refused: the call
fails the test at once (with an exception no `except Exception` can swallow), and a violation in a
thread the test started, where that exception would only end the thread, fails the test at
teardown. A test that needs a subprocess, a server or Postfix belongs in another tier.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from support.purity import GUARDED, Purity


@pytest.fixture(scope="session", autouse=True)
def _process_setup() -> None:
    """What the product does once per process, outside any test: the validation finds the C library
    for regcomp() with ctypes.util.find_library, which runs `ldconfig -p` on its first call."""
    from mailrelay.api import posix_regex

    posix_regex.compile_problem("a")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def purity(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Purity]:
    guard = Purity()
    for owner, attribute, what in GUARDED:
        name = f"{getattr(owner, '__name__', owner)}.{attribute}"
        monkeypatch.setattr(owner, attribute, guard.refuse(name, what))
    yield guard
    monkeypatch.undo()
    # A violation the test body raised has failed it already; one swallowed or in a thread has not.
    if guard.violations and not request.node.stash.get(CALL_FAILED, False):
        pytest.fail("\n".join(guard.violations), pytrace=False)
