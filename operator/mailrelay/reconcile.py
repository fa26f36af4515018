"""One reconcile pass for one MailRelay: validate, check the Secret, apply the children, report status.

Level-based: the pass looks only at what is (the relay, its Secret, its children) and never at what
changed, so any trigger (create, edit, a child deleted, a timer) runs the same code, and a pass over
a relay that is already right writes nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailrelay import metrics
from mailrelay import status as st
from mailrelay.apply import ApplyResult, ChildResult, apply_children, prune, prune_services
from mailrelay.delivery import Health
from mailrelay.kube import Api
from mailrelay.render import config_hash, endpoint, label_selector, render, selector_labels
from mailrelay.spec import MailRelay, SpecError, parse

log = logging.getLogger(__name__)
SECRET_KEYS = ("username", "password")


@dataclass
class Outcome:
    assessment: st.Assessment
    status: dict[str, Any]
    status_written: bool = False
    children: ApplyResult | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret_version(api: Api, relay: MailRelay) -> tuple[str, st.Assessment | None]:
    """A digest of the relay Secret's data (so rotation rolls the pods), or why it cannot be used."""
    if relay.spec.relay is None or not relay.spec.relay.auth_secret:
        return "", None
    name = relay.spec.relay.auth_secret
    secret = api.get("Secret", relay.namespace, name)
    if secret is None:
        return "", st.Assessment(False, st.SECRET_NOT_FOUND, f"Secret {name} (spec.relay.authSecretRef) does not "
                                 "exist; create it with the keys username and password", stalled=True)
    data = secret.get("data") or {}
    missing = [k for k in SECRET_KEYS if not data.get(k) or not base64.b64decode(data[k]).strip()]
    if missing:
        return "", st.Assessment(False, st.SECRET_INCOMPLETE, f"Secret {name} lacks a non-empty "
                                 f"{' and '.join(missing)}", stalled=True)
    digest = hashlib.sha256()
    for key in SECRET_KEYS:
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()[:16], None


def _conflict(result: ApplyResult) -> st.Assessment:
    first = result.conflicts[0]
    reason = st.CONFLICT if first.kind == "Service" else st.CHILD_CONFLICT
    names = ", ".join(f"{c.kind} {c.name} (owned by {c.owner})" for c in result.conflicts)
    hint = " Choose another spec.service.name or remove that Service." if first.kind == "Service" else ""
    return st.Assessment(False, reason, f"{names} already exists and is not this relay's; left untouched.{hint}",
                         stalled=True)


DeliveryProbe = Callable[[MailRelay], Health | None]


def _prune(api: Api, uid: str, relay: MailRelay, children: list[dict[str, Any]]) -> list[ChildResult]:
    """Remove what this relay owns but no longer renders: a renamed Service, a switched-off NetworkPolicy."""
    [service] = [c for c in children if c["kind"] == "Service"]
    policies = {c["metadata"]["name"] for c in children if c["kind"] == "NetworkPolicy"}
    labels = selector_labels(relay)
    return (prune_services(api, uid, service, labels)
            + prune(api, uid, "NetworkPolicy", relay.namespace, policies, labels))


def reconcile(api: Api, body: dict[str, Any], clock: str | None = None,
              probe: DeliveryProbe | None = None) -> Outcome:
    """Run one pass; API errors propagate (as ApiError) so the caller retries with backoff.

    `probe` asks the relay's pods how delivery goes (the resync passes one); other passes keep
    the last Delivering condition and queue.
    """
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    previous = body.get("status") or {}
    events: list[tuple[str, str, str]] = []
    result: ApplyResult | None = None
    hash_value = address = selector = None
    deployment = None
    health: Health | None = None
    try:
        relay = parse(body)
    except SpecError as exc:
        assessment = st.Assessment(False, st.INVALID_SPEC, "; ".join(exc.problems), stalled=True)
    else:
        address = endpoint(relay)
        selector = label_selector(selector_labels(relay))
        secret_version, problem = _secret_version(api, relay)
        if problem:
            assessment = problem
        else:
            hash_value = config_hash(relay, secret_version)
            children = render(relay, secret_version)
            result = apply_children(api, meta["uid"], children)
            if not result.conflicts:
                result.children += _prune(api, meta["uid"], relay, children)
            deployment = result.live("Deployment")
            assessment = _conflict(result) if result.conflicts else st.rollout(
                deployment, relay.spec.replicas, hash_value)
            if probe is not None and not result.conflicts:
                health = probe(relay)
            if result.writes:
                events.append(("Normal", "Applied", ", ".join(f"{c.action} {c.kind} {c.name}"
                                                             for c in result.writes)))

    def status_from(current: dict[str, Any]) -> dict[str, Any]:
        return st.build(assessment=assessment, generation=generation, previous=current, now=clock or now(),
                        deployment=deployment, config_hash=hash_value, endpoint=address,
                        selector=selector, delivery=health)

    new_status = status_from(previous)
    outcome = Outcome(assessment, new_status, children=result, events=events)
    if st.differs(new_status, previous):
        # The body may be older than the last status written (a watch event in flight): check first.
        fresh = api.get("MailRelay", namespace, name)
        if fresh is None or fresh["metadata"].get("uid") != meta.get("uid") \
                or fresh["metadata"].get("generation") != generation:
            return outcome  # deleted, replaced or edited meanwhile: the pass for that state reports
        outcome.status = new_status = status_from(fresh.get("status") or {})
        if st.differs(new_status, fresh.get("status")):
            api.patch_status("MailRelay", namespace, name, new_status)
            metrics.STATUS_WRITES.inc()
            outcome.status_written = True
            events += _transition_events(assessment, st.ready_condition(fresh.get("status")))
    return outcome


def _transition_events(assessment: st.Assessment, before: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Events for a Ready change, decided against the status just replaced, so each is posted once."""
    before = before or {}
    if assessment.stalled and before.get("reason") != assessment.reason:
        return [("Warning", assessment.reason, assessment.message)]
    if assessment.ready and before.get("status") != "True":
        return [("Normal", "Ready", assessment.message)]
    return []
