"""A problem collector for walking untrusted objects: every fault is reported, each naming its field."""

from __future__ import annotations

from typing import Any

from mailrelay.api import grammar


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
                f"{_printable(text)} is not {what}: only printable ASCII without spaces, "
                "line breaks or control characters",
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
            self.fail(path, f"{_printable(text)} is not a valid host name (RFC 1123: letters, digits, '-' and '.')")
        elif not grammar.is_hostname(host):
            self.fail(path, f"{_printable(text)} is an address, not a host name: its last label has no letter")
        elif need_dot and "." not in host:
            self.fail(path, f"{_printable(text)} must be a fully qualified domain name with at least one dot")
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
    return _printable(key)


def _printable(value: Any, limit: int = 80) -> str:
    """A value for an error message: repr (so a line break shows as \\n), cut to one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"
