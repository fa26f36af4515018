"""Execute a plan: write what differs, in order, and learn from the answers the caches could not give.

A child the caches do not hold is created with a POST: a 409 means someone else's object has that
name (remembered, so the next pass reports the conflict and only re-reads that one object). A child
the API server refuses is first taken back whole (its lists replaced with a JSON patch, then applied
again): an edit someone made can make a merge invalid, and that drift must still be repaired. Only
when the relay's own object is refused is it remembered as refused. After any such surprise the
status is not written: the pass is queued again at once and decides with what was learnt. The status
write carries the relay's resourceVersion as a precondition, so a stale body never overwrites a newer
status (409: queued again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailrelay.api.names import KIND
from mailrelay.controller import metrics
from mailrelay.controller.apply import REFUSED_STATUS, list_fields, refusal_key
from mailrelay.controller.decide import Plan, Write
from mailrelay.controller.observe import Memory, Observed
from mailrelay.kube.client import ApiError

log = logging.getLogger(__name__)


class Writer(Protocol):
    """The writes a pass makes: mailrelay.kube.client.Api (through the caches) or an in-memory fake."""

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def patch_json(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]: ...

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None: ...

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None: ...

    def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, instance: str, name: str | None = None
    ) -> None: ...


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)  # "created Service mail", in order
    status_written: bool = False
    again: bool = False  # learnt something (a conflict, a refusal, a stale body): run the pass again now
    gone: bool = False  # the relay no longer exists


def execute(api: Writer, memory: Memory, seen: Observed, plan: Plan, instance: str) -> Outcome:
    outcome = Outcome()
    key = seen.key
    if plan.keys.write is not None and not _write_keys(api, memory, seen, plan, outcome, instance):
        return outcome
    for write in plan.writes:
        if not _write_child(api, memory, key, write, outcome):
            outcome.again = True
            break
    if outcome.done:
        api.post_event(seen.body, "Normal", "Applied", ", ".join(outcome.done), instance)
    if outcome.again or plan.status is None:
        return outcome
    meta = seen.body["metadata"]
    try:
        written = api.patch_status(KIND, key[0], key[1], plan.status, meta.get("resourceVersion"))
    except ApiError as exc:
        if exc.status == 409:  # the body was stale: the watch brings the newer one
            outcome.again = True
            return outcome
        raise
    if written is None:
        outcome.gone = True
        return outcome
    outcome.status_written = True
    metrics.STATUS_WRITES.inc()
    memory.refused.pop(key, None)  # now in status.refusedChild, or no longer true
    for kind, reason, message in plan.events:
        api.post_event(seen.body, kind, reason, message, instance)
    return outcome


def _write_keys(api: Writer, memory: Memory, seen: Observed, plan: Plan, outcome: Outcome, instance: str) -> bool:
    assert plan.keys.write is not None
    secret = plan.keys.write.obj
    try:
        if plan.keys.write.action == "create":
            api.create(secret)
        else:
            api.apply(secret)
    except ApiError as exc:
        if exc.status == 409:  # taken meanwhile, or changed since it was read: decide again
            outcome.again = True
            return False
        raise
    for kind, reason, message in plan.keys.events:
        api.post_event(seen.body, kind, reason, message, instance)
    return True


def _write_child(api: Writer, memory: Memory, key: tuple[str, str], write: Write, outcome: Outcome) -> bool:
    """One child; False when the answer changes the picture (the pass runs again)."""
    namespace = key[0]
    if write.action == "delete":
        api.delete(write.kind, namespace, write.name, write.uid)
        outcome.done.append(f"deleted {write.kind} {write.name}")
        return True
    assert write.obj is not None
    try:
        if write.action == "create":
            api.create(write.obj)
        else:
            _apply_or_take_back(api, write)
    except ApiError as exc:
        if write.action == "create" and exc.status == 409:
            memory.foreign.setdefault(key, set()).add((write.kind, write.name))
            return False
        if exc.status in REFUSED_STATUS:
            memory.refused[key] = (
                refusal_key(write.obj),
                f"the API server refused {write.kind} {write.name}: {exc}; change the relay to try again",
            )
            return False
        raise
    outcome.done.append(f"{'created' if write.action == 'create' else 'updated'} {write.kind} {write.name}")
    return True


def _apply_or_take_back(api: Writer, write: Write) -> None:
    assert write.obj is not None
    try:
        api.apply(write.obj)
        return
    except ApiError as exc:
        if exc.status not in REFUSED_STATUS:
            raise
        log.info("apply of %s %s refused (%s); replacing its lists and applying again", write.kind, write.name, exc)
    spec = write.obj.get("spec")
    if not isinstance(spec, dict):
        raise ApiError(422, f"{write.kind} {write.name} refused and has no spec lists to take back")
    operations = [{"op": "add", "path": f"/spec{pointer}", "value": value} for pointer, value in list_fields(spec)]
    api.patch_json(write.kind, write.obj["metadata"]["namespace"], write.name, operations)
    api.apply(write.obj)
