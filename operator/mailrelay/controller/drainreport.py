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

from mailrelay.controller.delivery import clean
from mailrelay.render.relay import CONTAINER

REASON = "QueueLeftBehind"
_REPORT = re.compile(r"^mailrelay-drain: (\d+) message\(s\) left in the queue(?: \(([^()\n]{0,200})\))?")
PERSISTENT_HINT = "persistent volume"


class EventApi(Protocol):
    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None: ...


def left_behind(pod: dict[str, Any]) -> tuple[int, str, bool] | None:
    """(messages left, why, kept on a persistent volume) for a pod being deleted whose drain left mail.

    Only the number, the drain's short reason (cleaned) and the one hint are taken from the pod's
    words; the Event says the rest in ours.
    """
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None  # a container restart keeps the pod's volumes, and with them the queue
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != CONTAINER:
            continue
        message = str(((container.get("state") or {}).get("terminated") or {}).get("message") or "").strip()
        match = _REPORT.match(message)
        if match and 0 < int(match.group(1)) < 10**9:
            return int(match.group(1)), clean(match.group(2) or "", 200), PERSISTENT_HINT in message
    return None


def report(api: EventApi, pod: dict[str, Any], subject: dict[str, Any], instance: str) -> bool:
    """Post the Event for `pod` on `subject` (its relay, checked by the caller to control the pod, or the
    pod itself once the relay is gone) if its drain left mail behind. True when there was one to post."""
    found = left_behind(pod)
    if found is None:
        return False
    meta = pod["metadata"]
    count, why, persistent = found
    where = (
        "they stay on its persistent volume and are delivered when a pod mounts it again"
        if persistent
        else "they could not be handed to another replica and are lost with the pod's emptyDir"
    )
    api.post_event(
        subject,
        "Normal" if persistent else "Warning",
        REASON,
        f"pod {meta['name']}: {count} message(s) left in the queue when it stopped"
        f"{f' ({why})' if why else ''}; {where}",
        instance,
        name=f"{meta['name']}.drain-{str(meta.get('uid', ''))[:8]}",
    )
    return True
