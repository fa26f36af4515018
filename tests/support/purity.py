"""What the unit tier refuses (tests/unit/conftest.py puts it in place around every unit test)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

# (object, attribute, what it does): every way the product and its libraries start a process or
# reach an address. asyncio's and aiohttp's subprocesses go through subprocess.Popen, their
# connections through socket.connect or getaddrinfo.
GUARDED: list[tuple[Any, str, str]] = [
    (subprocess.Popen, "__init__", "starts a process"),
    (os, "system", "starts a process"),
    (os, "fork", "starts a process"),
    (os, "posix_spawn", "starts a process"),
    (os, "posix_spawnp", "starts a process"),
    (os, "execv", "replaces the process"),
    (os, "execve", "replaces the process"),
    (socket.socket, "connect", "opens a connection"),
    (socket.socket, "connect_ex", "opens a connection"),
    (socket.socket, "bind", "listens on an address"),
    (socket.socket, "sendto", "sends a datagram"),
    (socket, "getaddrinfo", "looks up a name"),
    (socket, "gethostbyname", "looks up a name"),
]


class Purity:
    """What a unit test tried that the tier forbids."""

    def __init__(self) -> None:
        self.violations: list[str] = []

    def refuse(self, name: str, what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            message = f"a unit test must be pure, but it called {name}, which {what}: move it to another tier"
            self.violations.append(message)
            pytest.fail(message, pytrace=True)

        return refused
