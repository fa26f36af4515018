"""The unit tier's guard (tests/unit/conftest.py) does refuse what it says it refuses."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from support.purity import Purity


def test_a_process_a_connection_a_listener_and_a_lookup_fail_the_test(purity: Purity) -> None:
    for attempt, name in [
        (lambda: subprocess.run(["true"], check=False), "Popen.__init__"),
        (lambda: os.system("true"), "os.system"),
        (lambda: socket.socket().connect(("127.0.0.1", 9)), "socket.connect"),
        (lambda: socket.socket().bind(("127.0.0.1", 0)), "socket.bind"),
        (lambda: socket.getaddrinfo("localhost", 25), "socket.getaddrinfo"),
    ]:
        with pytest.raises(pytest.fail.Exception, match=f"it called {name}"):
            attempt()
    violations = purity.violations
    assert len(violations) == 5
    violations.clear()  # refused as expected: the test itself stays green


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread ends on it
def test_a_violation_in_a_thread_is_kept_for_the_teardown(purity: Purity) -> None:
    thread = threading.Thread(target=lambda: subprocess.run(["true"], check=False))
    thread.start()
    thread.join()
    violations = purity.violations
    assert [v for v in violations if "Popen.__init__" in v] == violations and len(violations) == 1
    violations.clear()
