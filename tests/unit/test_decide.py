"""decide and execute, on the in-memory API (which is the pass's cache as well): what a pass writes,
what it refuses to touch, which verdict wins, and how drift and refusals are handled."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.api.names import SECRET_GRANT_ANNOTATION as GRANT
from mailrelay.controller import dkim_keys
from mailrelay.controller.apply import APPLIED_HASH_ANNOTATION, contains
from mailrelay.controller.decide import CHECKS, Inputs, assess
from mailrelay.controller.oauth import Tokens
from mailrelay.controller.observe import Memory, Observed
from mailrelay.kube.client import ApiError
from mailrelay.render.relay import render_relay

from support.fake_api import FakeApi
from support.one_pass import one_pass
from support.samples import make_relay, relay_object

NS, NAME = "apps", "relay"


def store(**spec: Any) -> FakeApi:
    api = FakeApi()
    api.put(relay_object({"mailFromFQDN": "a.example.com", **spec}))
    return api


def body(api: FakeApi) -> dict[str, Any]:
    found = api.get("MailRelay", NS, NAME)
    assert found is not None
    return found


def actions(api: FakeApi, memory: Memory | None = None) -> list[tuple[str, str]]:
    """One pass: the children it wrote, as (verb, kind)."""
    before = len(api.writes)
    one_pass(api, body(api), memory=memory)
    return [(verb, kind) for verb, kind, _ in api.writes[before:] if verb != "status"]


def test_first_pass_creates_and_second_pass_writes_nothing() -> None:
    api = store()
    assert actions(api) == [("create", k) for k in ("NetworkPolicy", "ConfigMap", "Deployment", "Service")]
    assert actions(api) == []


def test_a_hand_edit_or_a_removed_field_is_put_back() -> None:
    api = store(nodeSelector={"pool": "mail"})
    actions(api)
    api.objects[("ConfigMap", NS, "mailrelay-relay")]["data"]["main.cf"] = "edited"
    assert actions(api) == [("apply", "ConfigMap")]
    # Dropping nodeSelector from the spec leaves the live object a superset: the applied hash sees it.
    relay = body(api)
    del relay["spec"]["nodeSelector"]
    api.put(relay)
    assert actions(api) == [("apply", "Deployment")]


def test_foreign_objects_are_reported_and_never_written() -> None:
    api = store()
    owner = {"kind": "Other", "name": "x", "uid": "u", "controller": True}
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mailrelay-relay", "namespace": NS, "ownerReferences": [owner]},
    }
    api.put(foreign)
    kept = copy.deepcopy(api.objects[("ConfigMap", NS, "mailrelay-relay")])
    memory = Memory()
    assert actions(api, memory) == [("create", "NetworkPolicy"), ("create", "Service")]  # no workload
    done = one_pass(api, body(api), memory=memory)
    assert (
        done.plan.assessment.reason == cond.CHILD_CONFLICT
        and "ConfigMap mailrelay-relay (owned by Other/x)" in done.plan.assessment.message
    )
    assert api.objects[("ConfigMap", NS, "mailrelay-relay")] == kept
    assert api.get("Deployment", NS, "mailrelay-relay") is None  # never started on a foreign configuration


def test_a_name_taken_between_the_cache_and_the_create_is_learnt_not_overwritten() -> None:
    """The cache did not show the foreign object (it has no label of ours): the POST fails with 409,
    the pass remembers the name, and the next pass reports the conflict with one GET of that name."""
    api, memory = store(), Memory()

    class Racing(FakeApi):
        def cached(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return None if kind == "Service" else api.get(kind, namespace, name)

    api.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mail", "namespace": NS}})
    racing = Racing()
    racing.objects = api.objects
    done = one_pass(racing, body(api), memory=memory)
    assert done.outcome.again and done.plan.status is not None and not done.outcome.status_written
    assert memory.foreign[(NS, NAME)] == {("Service", "mail")}
    again = one_pass(api, body(api), memory=memory)
    assert again.plan.assessment.reason == cond.CONFLICT and again.outcome.status_written


def test_only_our_own_renamed_service_is_pruned() -> None:
    api = store()
    actions(api)
    lookalike = copy.deepcopy(api.objects[("Service", NS, "mail")])
    lookalike["metadata"].update(name="lookalike", ownerReferences=[], uid="other")
    api.objects[("Service", NS, "lookalike")] = lookalike
    relay = body(api)
    relay["spec"]["service"] = {"name": "smtp"}
    api.put(relay)
    assert ("delete", "Service") in actions(api)
    assert api.get("Service", NS, "mail") is None and api.get("Service", NS, "lookalike") is not None


def test_a_switched_off_network_policy_is_pruned_but_never_a_foreign_one() -> None:
    api = store()
    actions(api)
    ours = api.objects[("NetworkPolicy", NS, "mailrelay-relay")]
    for name, refs in (("lookalike", []), ("other-owner", [{**ours["metadata"]["ownerReferences"][0], "uid": "u2"}])):
        copied = copy.deepcopy(ours)
        copied["metadata"].update(name=name, ownerReferences=refs, uid=f"uid-{name}")
        api.objects[("NetworkPolicy", NS, name)] = copied
    relay = body(api)
    relay["spec"]["networkPolicy"] = {"enabled": False}
    api.put(relay)
    assert actions(api) == [("delete", "NetworkPolicy")]
    assert sorted(n for k, _, n in api.objects if k == "NetworkPolicy") == ["lookalike", "other-owner"]


def test_contains_compares_quantities_by_value_and_lists_by_length() -> None:
    assert contains({"resources": {"limits": {"memory": "67108864"}}}, {"resources": {"limits": {"memory": "64Mi"}}})
    assert not contains({"resources": {"limits": {"memory": "64M"}}}, {"resources": {"limits": {"memory": "64Mi"}}})
    assert not contains({"ports": [{"port": 25}]}, {"ports": [{"port": 25}, {"port": 26}]})
    assert contains({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not contains({"a": "1"}, {"a": 1})


def test_every_child_carries_the_applied_hash() -> None:
    api = store()
    actions(api)
    assert all(
        APPLIED_HASH_ANNOTATION in o["metadata"]["annotations"]
        for k, _, _ in api.objects
        for o in [api.objects[(k, NS, _)]]
        if k != "MailRelay"
    )


class Refusing(FakeApi):
    """Refuses (422) every apply of one kind, `times` times, as the API server refuses an invalid merge."""

    def __init__(self, kind: str, times: int) -> None:
        super().__init__()
        self.kind, self.times = kind, times

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == self.kind and self.times:
            self.times -= 1
            self.writes.append(("refused", obj["kind"], obj["metadata"]["name"]))
            raise ApiError(422, f"apply {obj['kind']}: Service is invalid: spec.ports[1].name: Duplicate value")
        return super().apply(obj)


def test_drift_that_makes_a_merge_invalid_is_taken_back_whole() -> None:
    """Someone's edit (a second port named smtp) makes every apply invalid: the pass replaces the lists
    it renders with a JSON patch and applies again, and the Service is repaired, not Stalled."""
    api = Refusing("Service", times=1)
    api.put(relay_object({"mailFromFQDN": "a.example.com"}))
    actions(api)
    api.objects[("Service", NS, "mail")]["spec"]["ports"] = [{"name": "smtp", "port": 2999}]
    api.times = 1
    before = len(api.writes)
    done = one_pass(api, body(api))
    assert [w[0] for w in api.writes[before:] if w[1] == "Service"] == ["refused", "patch", "apply"]
    assert api.objects[("Service", NS, "mail")]["spec"]["ports"][0]["port"] == 25
    assert not done.plan.assessment.stalled and not done.outcome.again


def test_a_child_the_server_refuses_for_good_is_not_sent_again_until_the_relay_changes() -> None:
    api, memory = Refusing("Deployment", times=100), Memory()
    api.put(relay_object({"mailFromFQDN": "a.example.com"}))
    actions(api, memory)  # the Deployment is created (a POST); now it exists
    relay = body(api)
    relay["spec"]["replicas"] = 2
    api.put(relay)
    first = one_pass(api, body(api), memory=memory)
    assert first.outcome.again and (NS, NAME) in memory.refused  # apply, take-back and apply: all refused
    second = one_pass(api, body(api), memory=memory)
    ready = next(c for c in body(api)["status"]["conditions"] if c["type"] == "Ready")
    assert second.plan.assessment.reason == cond.CHILD_REFUSED and ready["reason"] == cond.CHILD_REFUSED
    assert "Duplicate value" in ready["message"] and body(api)["status"][cond.REFUSED_FIELD].startswith("Deployment/")
    tries = api.times
    assert actions(api, memory) == [] and api.times == tries  # the same object is not sent again
    relay = body(api)
    relay["spec"]["replicas"] = 3
    api.put(relay)
    api.times = 0
    assert ("apply", "Deployment") in actions(api, memory)  # a changed relay is tried again


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # (invalid spec, Secret missing, OAuth2 token Secret taken, DKIM problem, foreign child, refused child)
        ((True, True, True, True, True, True), cond.INVALID_SPEC),
        ((False, True, True, True, True, True), cond.SECRET_NOT_FOUND),
        ((False, False, True, True, True, True), cond.TOKEN_SECRET_CONFLICT),
        ((False, False, False, True, True, True), dkim_keys.KEY_NOT_FOUND),
        ((False, False, False, False, True, True), cond.CONFLICT),
        ((False, False, False, False, False, True), cond.CHILD_REFUSED),
        ((False, False, False, False, False, False), cond.ROLLING_OUT),
    ],
)
def test_the_first_check_with_something_to_say_decides(case: tuple[bool, ...], expected: str) -> None:
    """The order of CHECKS, not of statements, decides which problem the status names."""
    invalid, secret, token, key, foreign, refused = case
    spec = {"mailFromFQDN": "a.example.com", "relay": {"host": "h.example", "authSecretRef": {"name": "s"}}}
    relay = make_relay(spec)
    rendered = render_relay(relay, "v")
    seen = Observed(
        (NS, NAME),
        relay_object(spec),
        relay=None if invalid else relay,
        problems=["spec: bad"],
        secret=None
        if secret
        else {"metadata": {"annotations": {GRANT: "*"}}, "stringData": {"username": "u", "password": "p"}},
    )
    if foreign:
        seen.foreign[("Service", "mail")] = "Other/x"
    if refused:
        from mailrelay.controller.apply import refusal_key, stamped

        seen.refused = refusal_key(stamped(rendered.objects[0]))
    keys = dkim_keys.KeyState(
        problem=cond.Assessment(False, dkim_keys.KEY_NOT_FOUND, "no key", stalled=True) if key else None
    )
    tokens = Tokens(
        problem=cond.Assessment(False, cond.TOKEN_SECRET_CONFLICT, "taken", stalled=True) if token else None
    )
    assert assess(Inputs(seen, keys, rendered, tokens)).reason == expected
    assert len(CHECKS) == 7
