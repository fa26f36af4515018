"""Decide: from what was observed and what the spec renders to, the writes to make and the status to show.

Pure: no API, no clock (the time comes in), no randomness (new DKIM keys come in with the key
state), so it is tested as a table. The verdict is the first check of CHECKS that finds a problem:
their order is the order of that list, not of whichever statement happens to run last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mailrelay.api import conditions as cond
from mailrelay.api.secret import SecretProblem, credentials, grant_problem
from mailrelay.controller import dkim_keys
from mailrelay.controller import status as st
from mailrelay.controller.apply import CLAIMS_IMMUTABLE, WORKLOADS, contains, needs_apply, refusal_key, stamped
from mailrelay.controller.oauth import Tokens
from mailrelay.controller.observe import Observed
from mailrelay.controller.rollouts import operator_caused
from mailrelay.kube.resources import label_selector
from mailrelay.render.relay import Rendered, endpoint, selector_labels, workload_kind

Event = tuple[str, str, str]  # type, reason, message
# Without these fixed, nothing is rendered and no child is touched: the running pods keep what they have.
BLOCKING = (
    cond.INVALID_SPEC,
    cond.SECRET_NOT_FOUND,
    cond.SECRET_NOT_GRANTED,
    cond.SECRET_INCOMPLETE,
    cond.SECRET_INVALID,
)
ROLLOUT_REASONS = (cond.ROLLING_OUT, cond.AVAILABLE, cond.SCALED_TO_ZERO)


@dataclass(frozen=True)
class Write:
    action: Literal["create", "apply", "delete"]
    kind: str
    name: str
    obj: dict[str, Any] | None = None  # create/apply: the desired object, stamped with its applied hash
    uid: str = ""  # delete: exactly this object


@dataclass
class Plan:
    assessment: cond.Assessment
    writes: list[Write] = field(default_factory=list)  # children, in the order to write them
    keys: dkim_keys.KeyState = field(default_factory=dkim_keys.KeyState)  # its write goes first
    status: dict[str, Any] | None = None  # None: the status shown is right already
    events: list[Event] = field(default_factory=list)  # for the transition, once the status is written
    tokens: Tokens | None = None  # the OAuth2 token step's state (its next look at the token)
    gated: bool = False  # it rolls pods another operator version rendered: it needs a slot first


@dataclass
class Inputs:
    seen: Observed
    keys: dkim_keys.KeyState
    rendered: Rendered | None  # None while the spec is invalid or a Secret unusable
    tokens: Tokens = field(default_factory=Tokens)  # the OAuth2 login's state (controller.oauth)
    waiting: bool = False  # an operator-caused rollout refused a slot (controller.rollouts): write nothing
    require_grant: bool = True  # a Secret the relay names must name the relay back (Settings.require_secret_grant)


def _invalid_spec(i: Inputs) -> cond.Assessment | None:
    if i.seen.relay is None:
        return cond.Assessment(False, cond.INVALID_SPEC, "; ".join(i.seen.problems), stalled=True)
    return None


def _secret(i: Inputs) -> cond.Assessment | None:
    relay = i.seen.relay
    if relay is None or relay.spec.relay is None or not relay.spec.relay.auth_secret:
        return None
    name = relay.spec.relay.auth_secret
    if i.seen.secret is None:
        return cond.Assessment(
            False,
            cond.SECRET_NOT_FOUND,
            f"Secret {name} (spec.relay.authSecretRef) does not exist; create it with the keys username and password",
            stalled=True,
        )
    refused = grant_problem(i.seen.secret, relay.name, "spec.relay.authSecretRef") if i.require_grant else None
    if refused:  # before the content is looked at: nothing about it reaches the status
        return cond.Assessment(False, cond.SECRET_NOT_GRANTED, refused, stalled=True)
    try:
        credentials(i.seen.secret)
    except SecretProblem as exc:
        reason = cond.SECRET_INCOMPLETE if exc.incomplete else cond.SECRET_INVALID
        return cond.Assessment(False, reason, f"Secret {name}: {exc}", stalled=True)
    return None


def _tokens(i: Inputs) -> cond.Assessment | None:
    return i.tokens.problem


def _dkim(i: Inputs) -> cond.Assessment | None:
    return i.keys.problem


def _conflict(i: Inputs) -> cond.Assessment | None:
    if not i.seen.foreign:
        return None
    found = sorted(i.seen.foreign.items())
    reason = cond.CONFLICT if found[0][0][0] == "Service" else cond.CHILD_CONFLICT
    names = ", ".join(f"{kind} {name} (owned by {owner})" for (kind, name), owner in found)
    hint = " Choose another spec.service.name or remove that Service." if reason == cond.CONFLICT else ""
    return cond.Assessment(
        False, reason, f"{names} already exists and is not this relay's; left untouched.{hint}", stalled=True
    )


def _refused(i: Inputs) -> cond.Assessment | None:
    """A child refused for good: a persistent queue's claim template changed (the server would refuse
    it on every pass), or the very object the API server refused last (not sent again)."""
    assert i.rendered is not None
    live = i.seen.child("StatefulSet")
    for obj in i.rendered.objects:
        if (
            obj["kind"] == "StatefulSet"
            and live is not None
            and not contains(obj["spec"]["volumeClaimTemplates"], (live.get("spec") or {}).get("volumeClaimTemplates"))
        ):
            return cond.Assessment(False, cond.QUEUE_STORAGE_IMMUTABLE, CLAIMS_IMMUTABLE, stalled=True)
    if i.seen.refused and i.seen.refused in {refusal_key(stamped(o)) for o in i.rendered.objects}:
        message = i.seen.refused_message or f"the API server refused {i.seen.refused}; change the relay to try again"
        return cond.Assessment(False, cond.CHILD_REFUSED, message, stalled=True)
    return None


def _rollout(i: Inputs) -> cond.Assessment:
    assert i.seen.relay is not None and i.rendered is not None
    live = i.seen.child(workload_kind(i.seen.relay))
    return st.rollout(live, i.seen.relay.spec.replicas, i.rendered.config_hash)


def _switching(i: Inputs) -> cond.Assessment | None:
    """The other queue mode's workload stays until the new one is ready, so its pods can hand over."""
    assert i.seen.relay is not None
    wanted = workload_kind(i.seen.relay)
    old = "Deployment" if wanted == "StatefulSet" else "StatefulSet"
    if i.seen.owned.get(old) and not _rollout(i).ready:
        return cond.Assessment(
            False,
            cond.SWITCHING_QUEUE,
            f"moving from a {old} to a {wanted} (spec.queue): the "
            f"{old} stays until the new pods are ready, then its pods hand their queue to them",
            reconciling=True,
        )
    return None


# The verdict is the first of these with something to say; past the first three, the relay renders.
CHECKS: tuple[Callable[[Inputs], cond.Assessment | None], ...] = (
    _invalid_spec,
    _secret,
    _tokens,
    _dkim,
    _conflict,
    _refused,
    _switching,
)


def assess(i: Inputs) -> cond.Assessment:
    for check in CHECKS:
        found = check(i)
        if found is not None:
            return found
    return _rollout(i)


def child_writes(i: Inputs, verdict: cond.Assessment) -> list[Write]:
    """Create what is missing, apply what differs, prune what is no longer rendered; never a name that
    is someone else's, never again the object the server refused, no workload on a foreign ConfigMap."""
    assert i.rendered is not None
    writes: list[Write] = []
    blocked_config = False
    for obj in map(stamped, i.rendered.objects):
        kind, name = obj["kind"], obj["metadata"]["name"]
        if (kind, name) in i.seen.foreign or refusal_key(obj) == i.seen.refused:
            blocked_config |= kind == "ConfigMap"
            continue
        if (kind in WORKLOADS and blocked_config) or (
            kind == "StatefulSet" and verdict.reason == cond.QUEUE_STORAGE_IMMUTABLE
        ):
            continue
        live = i.seen.children.get((kind, name))
        if live is None:
            writes.append(Write("create", kind, name, obj))
        elif needs_apply(obj, live):
            writes.append(Write("apply", kind, name, obj))
    return writes + _prunes(i, writes)


def _prunes(i: Inputs, writes: list[Write]) -> list[Write]:
    """What the relay owns but no longer renders: a switched-off NetworkPolicy, the budget below two
    replicas; a renamed Service once the new one is ours (a name someone else holds keeps the old one
    serving); the other queue mode's workload once the new one is ready (its pods hand their queue over)."""
    assert i.rendered is not None and i.seen.relay is not None
    rendered = {(o["kind"], o["metadata"]["name"]) for o in i.rendered.objects}
    service = next(o["metadata"]["name"] for o in i.rendered.objects if o["kind"] == "Service")
    kinds = ["NetworkPolicy", "PodDisruptionBudget"]
    if ("Service", service) in i.seen.children or any(w.kind == "Service" and w.action == "create" for w in writes):
        kinds.append("Service")
    if _rollout(i).ready:
        kinds.append("Deployment" if workload_kind(i.seen.relay) == "StatefulSet" else "StatefulSet")
    return [
        Write("delete", kind, o["metadata"]["name"], uid=o["metadata"]["uid"])
        for kind in kinds
        for o in i.seen.owned.get(kind, [])
        if (kind, o["metadata"]["name"]) not in rendered
    ]


def decide(i: Inputs, now: str) -> Plan:
    verdict = assess(i)
    relay, seen = i.seen.relay, i.seen
    renders = (
        relay is not None
        and i.rendered is not None
        and verdict.reason not in BLOCKING
        and not i.keys.problem
        and not i.tokens.problem
    )
    writes = child_writes(i, verdict) if renders else []
    gated = relay is not None and any(
        w.kind == workload_kind(relay)
        and w.action == "apply"
        and w.obj is not None
        and operator_caused(seen.child(w.kind) or {}, w.obj)
        for w in writes
    )
    if gated and i.waiting:
        writes, verdict = [], waiting_turn(seen.status)
        renders = False  # the status keeps the configuration hash the running pods have
    if (
        relay is not None
        and verdict.reason in ROLLOUT_REASONS
        and any(w.kind == workload_kind(relay) and w.action != "delete" for w in writes)
    ):
        # What the next pass will see once this write lands: report it now, not one status write later.
        verdict = cond.Assessment(
            False,
            cond.ROLLING_OUT,
            f"waiting for the {workload_kind(relay)} controller to see the new spec",
            reconciling=True,
        )
    plan = Plan(verdict, writes, i.keys, tokens=i.tokens, gated=gated and not i.waiting)
    previous = seen.status
    stuck = verdict.reason in (cond.CONFLICT, cond.CHILD_CONFLICT, cond.CHILD_REFUSED)
    new = st.build(
        assessment=verdict,
        generation=seen.body["metadata"].get("generation"),
        previous=previous,
        now=now,
        deployment=seen.child(workload_kind(relay)) if relay is not None else None,
        config_hash=i.rendered.config_hash if renders and i.rendered is not None else None,
        endpoint=endpoint(relay) if relay is not None else None,
        selector=label_selector(selector_labels(relay)) if relay is not None else None,
        refused=seen.refused if verdict.reason == cond.CHILD_REFUSED else "",
        delivery=None if stuck else i.tokens.delivering(seen.health, previous),
        extra=i.tokens.conditions,
    )
    new["dkim"] = dkim_keys.status(i.keys, relay, verdict) if relay is not None else previous.get("dkim")
    new["oauth2"] = i.tokens.status if relay is not None else previous.get("oauth2")
    if st.differs(new, previous):
        plan.status = new
        plan.events = transition_events(verdict, previous)
    return plan


def waiting_turn(previous: dict[str, Any]) -> cond.Assessment:
    """The verdict while an upgrade's new rendering waits: the running pods stay as Ready as they were."""
    ready = (st.ready_condition(previous) or {}).get("status") == "True"
    return cond.Assessment(
        ready,
        cond.ROLLOUT_WAITING,
        "the operator renders this relay's pods anew; it waits for its "
        "turn, as a few relays roll at a time after an operator upgrade",
        reconciling=True,
    )


def transition_events(verdict: cond.Assessment, previous: dict[str, Any]) -> list[Event]:
    """At most one Event per real transition, decided against the status it replaces: a Warning when the
    relay stalls (or stalls for another reason), a Normal `Ready` when it recovers from a stall. Routine
    rollouts are told by the `Applied` Event of the writes and by the conditions."""
    ready = st.ready_condition(previous) or {}
    stalled = st.condition(previous, cond.STALLED) or {}
    if verdict.stalled and ready.get("reason") != verdict.reason:
        return [("Warning", verdict.reason, verdict.message)]
    if verdict.ready and ready.get("status") != "True" and stalled.get("status") == "True":
        return [("Normal", "Ready", verdict.message)]
    return []
