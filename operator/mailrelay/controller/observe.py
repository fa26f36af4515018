"""Gather: everything one pass needs, read before anything is decided.

Children, relay pods and relays come from the informers' caches; what the operator may only read
by name (Secrets) and a foreign object it already knows blocks a child's name are read from the
API. Nothing here writes, and nothing after this reads: `decide` works on the Observed alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mailrelay.api.conditions import REFUSED_FIELD
from mailrelay.api.names import KIND, RESOURCES
from mailrelay.api.spec import MailRelay, SpecError, parse
from mailrelay.controller.apply import describe_owner, owned_by
from mailrelay.controller.delivery import Health
from mailrelay.controller.status import ready_condition
from mailrelay.render.relay import child_names, dkim_secret_name, selector_labels

Key = tuple[str, str]  # namespace, name
OWNED_KINDS = ("NetworkPolicy", "ConfigMap", "Deployment", "StatefulSet", "PodDisruptionBudget", "Service")


class Reader(Protocol):
    """Where a pass reads: the informers (the operator) or an in-memory API (unit tests)."""

    def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def cached_list(self, kind: str, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace (None: every namespace) with all of `labels`."""
        ...

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A GET: Secrets, and objects of other owners the caches do not hold."""
        ...


@dataclass
class Memory:
    """What earlier passes learnt that the caches cannot show: foreign objects under a child's name
    (they carry no label of ours, so no watch sees them) and the parsed spec of each relay version."""

    foreign: dict[Key, set[tuple[str, str]]] = field(default_factory=dict)
    refused: dict[Key, tuple[str, str]] = field(default_factory=dict)  # refusal_key, the server's words
    parsed: dict[tuple[str, int, str], MailRelay] = field(default_factory=dict)

    def parse(self, body: dict[str, Any], default_image: str) -> MailRelay:
        """Parsed once per relay generation (the spec cannot change without a new generation)."""
        meta = body["metadata"]
        key = (str(meta.get("uid", "")), int(meta.get("generation") or 0), default_image)
        relay = self.parsed.get(key)
        if relay is None:
            relay = parse(body, default_image)
            if len(self.parsed) > 4096:
                self.parsed.clear()
            self.parsed[key] = relay
        return relay

    def forget(self, key: Key) -> None:
        self.foreign.pop(key, None)
        self.refused.pop(key, None)


@dataclass
class Observed:
    key: Key
    body: dict[str, Any]
    relay: MailRelay | None = None
    problems: list[str] = field(default_factory=list)  # why the spec is invalid
    secret: dict[str, Any] | None = None  # spec.relay.authSecretRef, when named
    dkim_secret: dict[str, Any] | None = None
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, name) → live, ours
    foreign: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) → who owns it instead
    owned: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind → every object of ours
    health: Health | None = None
    refused: str = ""  # refusal_key() of the child the API server refused last, if it still stands
    refused_message: str = ""

    def child(self, kind: str) -> dict[str, Any] | None:
        """The live child of this kind under the name the spec gives it, if it is ours."""
        if self.relay is None:
            return None
        return self.children.get((kind, child_names(self.relay)[kind]))

    @property
    def uid(self) -> str:
        return str(self.body["metadata"].get("uid", ""))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})


def observe(
    reader: Reader, memory: Memory, body: dict[str, Any], default_image: str, health: Health | None = None
) -> Observed:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    found = Observed(key, {"apiVersion": RESOURCES[KIND].api_version, "kind": KIND, **body}, health=health)
    found.refused, found.refused_message = memory.refused.get(key) or (
        str(found.status.get(REFUSED_FIELD) or ""),
        str((ready_condition(found.status) or {}).get("message") or ""),
    )
    try:
        found.relay = relay = memory.parse(found.body, default_image)
    except SpecError as exc:
        found.problems = list(exc.problems)
        return found
    if relay.spec.relay is not None and relay.spec.relay.auth_secret:
        found.secret = reader.read("Secret", relay.namespace, relay.spec.relay.auth_secret)
    dkim_name = dkim_secret_name(relay)
    if dkim_name:
        found.dkim_secret = reader.read("Secret", relay.namespace, dkim_name)
    labels = selector_labels(relay)
    for kind in OWNED_KINDS:
        found.owned[kind] = [o for o in reader.cached_list(kind, relay.namespace, labels) if owned_by(o, found.uid)]
    known_foreign = memory.foreign.get(key, set())
    for kind, name in child_names(relay).items():
        live = reader.cached(kind, relay.namespace, name)
        if live is not None and owned_by(live, found.uid):
            found.children[(kind, name)] = live
            continue
        if live is None and (kind, name) in known_foreign:
            live = reader.read(kind, relay.namespace, name)  # still there? (a stalled relay's one GET per pass)
        if live is not None and not owned_by(live, found.uid):
            found.foreign[(kind, name)] = describe_owner(live)
    memory.foreign[key] = set(found.foreign)
    return found
