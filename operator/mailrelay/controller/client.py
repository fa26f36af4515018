"""The API client as the operator uses it: MailRelay among the kinds it knows, our field manager."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailrelay.api.names import API_VERSION, FIELD_MANAGER, KIND, RESOURCES
from mailrelay.kube.client import Api
from mailrelay.kube.resources import Resource


@dataclass
class OperatorApi(Api):
    resources: Mapping[str, Resource] = field(default_factory=lambda: dict(RESOURCES))
    field_manager: str = FIELD_MANAGER

    def list_relays(self, namespaces: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        """Every MailRelay in these namespaces, or in all when the list is empty."""
        found: list[dict[str, Any]] = []
        for namespace in namespaces or (None,):
            items, _ = self.list_all(KIND, namespace, {})
            # List items lack apiVersion/kind; the relay's Events name their object with them.
            found += [{"apiVersion": API_VERSION, "kind": KIND, **item} for item in items]
        return found
