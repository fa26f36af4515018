"""One reconcile pass for one MailRelay: validate, check the Secret, apply the children, report status.

Level-based: the pass looks only at what is (the relay, its Secret, its children) and never at what
changed, so any trigger (create, edit, a child deleted, a timer) runs the same code, and a pass over
a relay that is already right writes nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mailrelay.api import conditions as cond
from mailrelay.api.secret import SecretProblem, credentials, grant_problem
from mailrelay.api.spec import MailRelay, SpecError, parse
from mailrelay.controller import dkim_keys, metrics
from mailrelay.controller import status as st
from mailrelay.controller.apply import (
    ApplyResult,
    ChildResult,
    ObjectApi,
    apply_children,
    owned_by,
    prune,
    prune_services,
)
from mailrelay.controller.delivery import Health
from mailrelay.kube.resources import label_selector
from mailrelay.render.postfix import config_files
from mailrelay.render.relay import (
    config_hash,
    endpoint,
    render_relay,
    selector_labels,
    workload_kind,
)
from mailrelay.version import RELEASED_POSTFIX_IMAGE

log = logging.getLogger(__name__)


class Api(ObjectApi, Protocol):
    """What a pass needs of the API: mailrelay.kube.client.Api, or an in-memory fake in unit tests."""

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Outcome:
    assessment: cond.Assessment
    status: dict[str, Any]
    status_written: bool = False
    children: ApplyResult | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret_version(api: Api, relay: MailRelay, require_grant: bool = True) -> tuple[str, cond.Assessment | None]:
    """The Secret's identity (uid and resourceVersion), so rotation rolls the pods, or why it is unusable.

    Identity, not content: the version ends up in status.configHash and the pod template, which
    anyone who may read the relay sees; a digest of the password would let them test guesses.
    """
    if relay.spec.relay is None or not relay.spec.relay.auth_secret:
        return "", None
    name = relay.spec.relay.auth_secret
    secret = api.get("Secret", relay.namespace, name)
    if secret is None:
        return "", cond.Assessment(
            False,
            cond.SECRET_NOT_FOUND,
            f"Secret {name} (spec.relay.authSecretRef) does not exist; create it with the keys username and password",
            stalled=True,
        )
    refused = grant_problem(secret, relay.name, "spec.relay.authSecretRef") if require_grant else None
    if refused:  # before the content is looked at: nothing about it reaches the status
        return "", cond.Assessment(False, cond.SECRET_NOT_GRANTED, refused, stalled=True)
    try:
        credentials(secret)
    except SecretProblem as exc:
        reason = cond.SECRET_INCOMPLETE if exc.incomplete else cond.SECRET_INVALID
        return "", cond.Assessment(False, reason, f"Secret {name}: {exc}", stalled=True)
    meta = secret.get("metadata") or {}
    return f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}", None


def _conflict(result: ApplyResult) -> cond.Assessment:
    first = result.conflicts[0]
    reason = cond.CONFLICT if first.kind == "Service" else cond.CHILD_CONFLICT
    names = ", ".join(f"{c.kind} {c.name} (owned by {c.owner})" for c in result.conflicts)
    hint = " Choose another spec.service.name or remove that Service." if first.kind == "Service" else ""
    return cond.Assessment(
        False, reason, f"{names} already exists and is not this relay's; left untouched.{hint}", stalled=True
    )


DeliveryProbe = Callable[[MailRelay], Health | None]


def _prune(
    api: Api, uid: str, relay: MailRelay, children: list[dict[str, Any]], rollout: cond.Assessment
) -> tuple[list[ChildResult], cond.Assessment | None]:
    """Remove what this relay owns but no longer renders: a renamed Service, a switched-off
    NetworkPolicy, the budget below two replicas, and the workload of the other queue mode, but
    that only once the new one is ready, so the old pods' drain has somewhere to hand its queue."""
    [service] = [c for c in children if c["kind"] == "Service"]
    labels = selector_labels(relay)

    def rendered(kind: str) -> set[str]:
        return {c["metadata"]["name"] for c in children if c["kind"] == kind}

    pruned = (
        prune_services(api, uid, service, labels)
        + prune(api, uid, "NetworkPolicy", relay.namespace, rendered("NetworkPolicy"), labels)
        + prune(api, uid, "PodDisruptionBudget", relay.namespace, rendered("PodDisruptionBudget"), labels)
    )
    wanted = workload_kind(relay)
    old_kind = "Deployment" if wanted == "StatefulSet" else "StatefulSet"
    if not rollout.ready and any(owned_by(o, uid) for o in api.list(old_kind, relay.namespace, labels)):
        return pruned, cond.Assessment(
            False,
            cond.SWITCHING_QUEUE,
            f"moving from a {old_kind} to a {wanted} "
            f"(spec.queue): the {old_kind} stays until the new pods are ready, then its "
            "pods hand their queue to them",
            reconciling=True,
        )
    return pruned + prune(api, uid, old_kind, relay.namespace, set(), labels), None


def _refused(result: ApplyResult, previous: dict[str, Any]) -> cond.Assessment:
    """A child refused for good: stalled until the relay changes, not retried.

    A claim template change is refused before it is sent (QueueStorageImmutable). When an earlier
    pass got the API server's refusal, its message (the server's words) is kept as it was.
    """
    first = result.refused[0]
    if not first.owner and first.message:
        return cond.Assessment(False, cond.QUEUE_STORAGE_IMMUTABLE, first.message, stalled=True)
    before = st.ready_condition(previous) or {}
    if not first.message and before.get("reason") == cond.CHILD_REFUSED:
        return cond.Assessment(False, cond.CHILD_REFUSED, str(before.get("message", "")), stalled=True)
    return cond.Assessment(
        False,
        cond.CHILD_REFUSED,
        f"the API server refused {first.kind} {first.name}: "
        f"{first.message or 'earlier'}; change the relay to try again",
        stalled=True,
    )


def reconcile(
    api: Api,
    body: dict[str, Any],
    clock: str | None = None,
    default_image: str = RELEASED_POSTFIX_IMAGE,
    probe: DeliveryProbe | None = None,
    require_grant: bool = True,
) -> Outcome:
    """Run one pass; API errors propagate (as ApiError) so the caller retries with backoff.

    `clock` fixes the time written into conditions (tests); `default_image` is the Postfix image
    of a relay without spec.image (Settings.postfix_image); `probe` asks the relay's pods how
    delivery goes (the resync passes one), other passes keep the last Delivering condition and queue;
    `require_grant` (Settings.require_secret_grant) makes referenced Secrets name the relay.
    """
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    previous = body.get("status") or {}
    events: list[tuple[str, str, str]] = []
    result: ApplyResult | None = None
    hash_value = address = selector = None
    refused = ""
    deployment = None
    health: Health | None = None
    dkim_status = previous.get("dkim")  # kept while the spec cannot be read
    try:
        relay = parse(body, default_image)
        config_files(relay.spec)  # UnsafeValue (a SpecError): never render what validation missed
    except SpecError as exc:
        assessment = cond.Assessment(False, cond.INVALID_SPEC, "; ".join(exc.problems), stalled=True)
    else:
        address = endpoint(relay)
        selector = label_selector(selector_labels(relay))
        secret_version, problem = _secret_version(api, relay, require_grant)
        keys = dkim_keys.ensure(api, relay, meta.get("annotations") or {}, require_grant)
        events += keys.events
        problem = problem or keys.problem
        if keys.version:  # a new key rolls the pods, like a new smarthost password
            secret_version += f"/dkim:{keys.version}"
        if problem:
            assessment = problem
        else:
            hash_value = config_hash(relay, secret_version)
            children = render_relay(relay, secret_version)
            result = apply_children(api, meta["uid"], children, refused=previous.get(cond.REFUSED_FIELD) or "")
            deployment = result.live(workload_kind(relay))
            assessment = st.rollout(deployment, relay.spec.replicas, hash_value)
            if not result.conflicts and not result.refused:
                pruned, switching = _prune(api, meta["uid"], relay, children, assessment)
                result.children += pruned
                assessment = switching or assessment
            if result.refused:
                assessment = _refused(result, previous)
                refused = next((c.owner for c in result.refused if c.owner), "")
            elif result.conflicts:
                assessment = _conflict(result)
            if probe is not None and not result.conflicts and not result.refused:
                health = probe(relay)
            if result.writes:
                events.append(("Normal", "Applied", ", ".join(f"{c.action} {c.kind} {c.name}" for c in result.writes)))
        dkim_status = dkim_keys.status(keys, relay, assessment)

    def status_from(current: dict[str, Any]) -> dict[str, Any]:
        return {
            **st.build(
                assessment=assessment,
                generation=generation,
                previous=current,
                now=clock or now(),
                deployment=deployment,
                config_hash=hash_value,
                endpoint=address,
                selector=selector,
                refused=refused,
                delivery=health,
            ),
            "dkim": dkim_status,
        }

    new_status = status_from(previous)
    outcome = Outcome(assessment, new_status, children=result, events=events)
    if st.differs(new_status, previous):
        # The body may be older than the last status written (a watch event in flight): check first.
        fresh = api.get("MailRelay", namespace, name)
        if (
            fresh is None
            or fresh["metadata"].get("uid") != meta.get("uid")
            or fresh["metadata"].get("generation") != generation
        ):
            return outcome  # deleted, replaced or edited meanwhile: the pass for that state reports
        outcome.status = new_status = status_from(fresh.get("status") or {})
        if st.differs(new_status, fresh.get("status")):
            api.patch_status("MailRelay", namespace, name, new_status)
            metrics.STATUS_WRITES.inc()
            outcome.status_written = True
            events += _transition_events(assessment, st.ready_condition(fresh.get("status")))
    return outcome


def _transition_events(assessment: cond.Assessment, before: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Events for a Ready change, decided against the status just replaced, so each is posted once."""
    before = before or {}
    if assessment.stalled and before.get("reason") != assessment.reason:
        return [("Warning", assessment.reason, assessment.message)]
    if assessment.ready and before.get("status") != "True":
        return [("Normal", "Ready", assessment.message)]
    return []
