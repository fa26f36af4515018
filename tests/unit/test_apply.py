"""apply_children against an in-memory object store: when it writes, and what it refuses to touch."""

from __future__ import annotations

import copy

from mailrelay.controller.apply import APPLIED_HASH_ANNOTATION, apply_children, contains, prune, prune_services
from mailrelay.render.relay import render_relay, selector_labels

from support.fake_api import FakeApi
from support.samples import make_relay

UID = "6b0c1a4e-1d2f-4c1e-9a57-3f0e7a1b2c3d"


def test_first_pass_creates_and_second_pass_writes_nothing() -> None:
    store, relay = FakeApi(), make_relay({"mailFromFQDN": "a.example.com"})
    first = apply_children(store, UID, render_relay(relay))
    assert [c.action for c in first.children] == ["created"] * 4
    second = apply_children(store, UID, render_relay(relay))
    assert [c.action for c in second.children] == ["unchanged"] * 4
    assert len(store.writes) == 4


def test_a_hand_edit_or_a_removed_field_is_put_back() -> None:
    store, relay = FakeApi(), make_relay({"mailFromFQDN": "a.example.com", "nodeSelector": {"pool": "mail"}})
    apply_children(store, UID, render_relay(relay))
    store.objects[("ConfigMap", "apps", "mailrelay-relay")]["data"]["main.cf"] = "edited"
    assert [c.action for c in apply_children(store, UID, render_relay(relay)).children] == [
        "unchanged",
        "updated",
        "unchanged",
        "unchanged",
    ]
    # Dropping nodeSelector from the spec leaves the live object a superset: the applied hash sees it.
    without = make_relay({"mailFromFQDN": "a.example.com"})
    assert [c.action for c in apply_children(store, UID, render_relay(without)).children] == [
        "unchanged",
        "unchanged",
        "updated",
        "unchanged",
    ]


def test_foreign_objects_are_reported_and_never_written() -> None:
    store, relay = FakeApi(), make_relay({"mailFromFQDN": "a.example.com"})
    owner = {"kind": "Other", "name": "x", "uid": "u", "controller": True}
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mailrelay-relay", "namespace": "apps", "ownerReferences": [owner]},
    }
    store.stored(foreign)
    result = apply_children(store, UID, render_relay(relay))
    assert [(c.kind, c.action) for c in result.children] == [
        ("NetworkPolicy", "created"),
        ("ConfigMap", "conflict"),
        ("Deployment", "unchanged"),
        ("Service", "created"),
    ]
    assert result.conflicts[0].owner == "Other/x"
    assert store.objects[("ConfigMap", "apps", "mailrelay-relay")] == foreign
    assert store.get("Deployment", "apps", "mailrelay-relay") is None  # never started on foreign config


def test_only_our_own_renamed_service_is_pruned() -> None:
    store = FakeApi()
    old = make_relay({"mailFromFQDN": "a.example.com"})
    apply_children(store, UID, render_relay(old))
    lookalike = copy.deepcopy(store.objects[("Service", "apps", "mail")])
    lookalike["metadata"].update(name="lookalike", ownerReferences=[])
    store.objects[("Service", "apps", "lookalike")] = lookalike
    new = make_relay({"mailFromFQDN": "a.example.com", "service": {"name": "smtp"}})
    children = render_relay(new)
    apply_children(store, UID, children)
    pruned = prune_services(store, UID, children[-1], selector_labels(new))
    assert [(c.name, c.action) for c in pruned] == [("mail", "deleted")]
    assert store.get("Service", "apps", "lookalike") is not None


def test_a_switched_off_network_policy_is_pruned_but_never_a_foreign_one() -> None:
    store = FakeApi()
    relay = make_relay({"mailFromFQDN": "a.example.com"})
    apply_children(store, UID, render_relay(relay))
    ours = store.objects[("NetworkPolicy", "apps", "mailrelay-relay")]
    for name, refs in (("lookalike", []), ("other-owner", [{**ours["metadata"]["ownerReferences"][0], "uid": "u2"}])):
        copied = copy.deepcopy(ours)
        copied["metadata"].update(name=name, ownerReferences=refs)
        store.objects[("NetworkPolicy", "apps", name)] = copied
    off = make_relay({"mailFromFQDN": "a.example.com", "networkPolicy": {"enabled": False}})
    children = render_relay(off)
    assert "NetworkPolicy" not in [c["kind"] for c in children]
    kept = prune(store, UID, "NetworkPolicy", "apps", set(), selector_labels(off))
    assert [(c.kind, c.name, c.action) for c in kept] == [("NetworkPolicy", "mailrelay-relay", "deleted")]
    assert sorted(n for k, _, n in store.objects if k == "NetworkPolicy") == ["lookalike", "other-owner"]
    assert prune(store, UID, "NetworkPolicy", "apps", {"mailrelay-relay"}, selector_labels(relay)) == []


def test_contains_compares_quantities_by_value_and_lists_by_length() -> None:
    assert contains({"resources": {"limits": {"memory": "67108864"}}}, {"resources": {"limits": {"memory": "64Mi"}}})
    assert not contains({"resources": {"limits": {"memory": "64M"}}}, {"resources": {"limits": {"memory": "64Mi"}}})
    assert not contains({"ports": [{"port": 25}]}, {"ports": [{"port": 25}, {"port": 26}]})
    assert contains({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not contains({"a": "1"}, {"a": 1})


def test_every_child_carries_the_applied_hash() -> None:
    store, relay = FakeApi(), make_relay({"mailFromFQDN": "a.example.com"})
    apply_children(store, UID, render_relay(relay))
    assert all(APPLIED_HASH_ANNOTATION in o["metadata"]["annotations"] for o in store.objects.values())
