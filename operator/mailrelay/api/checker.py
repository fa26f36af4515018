"""A problem collector for walking untrusted objects: every fault is reported, each naming its field."""

from __future__ import annotations

import reprlib
from typing import Any

from mailrelay.api import grammar

QUOTE_LIMIT = 80
# reprlib stops at these sizes however large (or, from YAML aliases, however shared) a value is, so
# quoting a user value in a message costs the same for a 4 MiB string or a billion-element list.
_REPR = reprlib.Repr()
_REPR.maxstring = QUOTE_LIMIT
_REPR.maxother = QUOTE_LIMIT
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class Checker:
    """Collects problems while walking a spec; each check returns a clean value or None."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, path: str, value: Any, known: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object, got {kind(value)}")
            return None
        for key in sorted(set(value) - known, key=str):
            self.fail(f"{path}.{field_name(key)}", f"unknown field (known: {', '.join(sorted(known))})")
        return value

    def string(self, path: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {kind(value)}")
            return None
        return value

    def token(self, path: str, value: Any, what: str, max_length: int = 253) -> str | None:
        """A string for a config file or a pod spec: printable ASCII, no space, no line break."""
        text = self.string(path, value)
        if text is None:
            return None
        if not text:
            self.fail(path, "must not be empty")
        elif len(text) > max_length:
            self.fail(path, f"must be at most {max_length} characters, got {len(text)}")
        elif not grammar.full(grammar.PRINTABLE, text):
            self.fail(
                path,
                f"{quote(text)} is not {what}: only printable ASCII without spaces, line breaks or control characters",
            )
        else:
            return text
        return None

    def integer(self, path: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {kind(value)}")
            return None
        if not low <= value <= high:
            self.fail(path, f"must be from {low} to {high}, got {value}")
            return None
        return value

    def hostname(self, path: str, value: Any, *, need_dot: bool) -> str | None:
        text = self.string(path, value)
        if text is None:
            return None
        host = text.lower()
        if not host:
            self.fail(path, "must not be empty")
        elif len(host) > 253:
            self.fail(path, f"must be at most 253 characters, got {len(host)}")
        elif not grammar.full(grammar.HOSTNAME, host):
            self.fail(path, f"{quote(text)} is not a valid host name (RFC 1123: letters, digits, '-' and '.')")
        elif not grammar.is_hostname(host):
            self.fail(path, f"{quote(text)} is an address, not a host name: its last label has no letter")
        elif need_dot and "." not in host:
            self.fail(path, f"{quote(text)} must be a fully qualified domain name with at least one dot")
        else:
            return host
        return None

    def string_list(self, path: str, value: Any, limit: int) -> list[Any] | None:
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {kind(value)}")
            return None
        if len(value) > limit:
            self.fail(path, f"must have at most {limit} entries, got {len(value)}")
            return None
        return value


def field_name(key: Any) -> str:
    """A key for a path: as is when it is a short printable token, else quoted."""
    if isinstance(key, str) and len(key) <= 63 and grammar.full(grammar.PRINTABLE, key):
        return key
    return quote(key)


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A user value for a message: repr (a line break shows as \\n), at most about `limit` characters.

    Never the whole value: a message goes to a terminal, a log, a condition and an Event, and the
    value may be megabytes long or, from a YAML alias bomb, expand to a billion elements.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit + 8 else text[:limit] + "..."
