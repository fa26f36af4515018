"""A problem collector for walking untrusted objects: every fault is reported, each naming its field."""

from __future__ import annotations

import ipaddress
import reprlib
from collections.abc import Callable
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


KIND_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def kind(value: Any) -> str:
    """How a message names a value's JSON type."""
    return KIND_NAMES.get(type(value), type(value).__name__)


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

    def secret_ref(self, path: str, value: Any) -> str | None:
        """A `{name: ...}` reference to a Secret in the object's namespace: the name, or None."""
        ref = self.mapping(path, value, {"name"})
        name = self.string(f"{path}.name", ref.get("name")) if ref is not None else None
        if name is not None and (not grammar.full(grammar.HOSTNAME, name) or len(name) > 253):
            self.fail(f"{path}.name", f"{quote(name)} is not a valid Secret name")
            return None
        return name

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

    def networks(
        self, path: str, items: list[Any], problem: Callable[[Network], str | None] = lambda _: None
    ) -> tuple[str, ...] | None:
        """CIDR networks (address/prefix, host bits zero, no %zone), each once, none with a `problem`."""
        networks: list[str] = []
        for i, item in enumerate(items):
            text = self.string(f"{path}[{i}]", item)
            if text is None:
                continue
            fault = _network_fault(text)
            network = ipaddress.ip_network(text, strict=True) if fault is None else None
            if network is not None and str(network) in networks:
                self.fail(f"{path}[{i}]", f"duplicate network {quote(str(network))}")
                continue
            fault = fault or (problem(network) if network is not None else None)
            if fault is not None or network is None:
                self.fail(f"{path}[{i}]", f"{quote(text)} {fault}")
                continue
            networks.append(str(network))
        return tuple(networks) if len(networks) == len(items) else None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network_fault(text: str) -> str | None:
    if "/" not in text and grammar.ip_literal(text):
        return f"needs a prefix length, e.g. 10.0.0.0/8 or {text}/32"
    if not grammar.full(r"[0-9a-f:.]+/[0-9]{1,3}", text, ignore_case=True):
        return "is not a CIDR network (address/prefix, no %zone)"
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        return f"is not a CIDR network ({exc})"
    return None


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
