"""What a relay pod's preStop drain left behind, posted as an Event.

Relay pods carry no API credentials (automountServiceAccountToken: false), and a token in every
relay pod only to post one Event would widen what a compromised relay can do. So the drain writes
its last line to the container's termination message; the kubelet copies it into the pod's status,
and the operator, which watches relay pods read-only, posts it as an Event: on the MailRelay, or on
the pod when the relay is being deleted too. The Event's name is derived from the pod's uid, so it
is posted once however many watch events or operator replicas see the pod.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from mailrelay.render.relay import CONTAINER

REASON = "QueueLeftBehind"
_REPORT = re.compile(r"^mailrelay-drain: (\d+) message\(s\) left in the queue")
PERSISTENT_HINT = "persistent volume"


class EventApi(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None: ...


def left_behind(pod: dict[str, Any]) -> tuple[int, str] | None:
    """(messages left, the drain's words) for a pod being deleted whose drain left mail, else None."""
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None  # a container restart keeps the pod's volumes, and with them the queue
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != CONTAINER:
            continue
        message = str(((container.get("state") or {}).get("terminated") or {}).get("message") or "").strip()
        match = _REPORT.match(message)
        if match and int(match.group(1)) > 0:
            return int(match.group(1)), message
    return None


def report(api: EventApi, pod: dict[str, Any], instance: str) -> bool:
    """Post the Event for `pod` if its drain left mail behind; True when there was one to post."""
    found = left_behind(pod)
    if found is None:
        return False
    meta = pod["metadata"]
    relay_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance", "")
    relay = api.get("MailRelay", meta["namespace"], relay_name) if relay_name else None
    if relay is not None and relay["metadata"].get("deletionTimestamp"):
        relay = None
    subject = relay if relay is not None else {"apiVersion": "v1", "kind": "Pod", **pod}
    words = found[1]
    kind = "Normal" if PERSISTENT_HINT in words else "Warning"
    api.post_event(
        subject,
        kind,
        REASON,
        f"pod {meta['name']}: {words}",
        instance,
        name=f"{meta['name']}.drain-{str(meta.get('uid', ''))[:8]}",
    )
    return True
