"""After an operator upgrade renders every relay's pods anew, at most N relays roll at once, first come
first served, each slot freed when its relay is ready again; an owner's own edit is never held back."""

from __future__ import annotations

from typing import Any

from mailrelay.api import conditions as cond
from mailrelay.api.names import KIND, RENDERED_BY_ANNOTATION
from mailrelay.controller.context import Context
from mailrelay.controller.rollouts import RolloutGate, rolling_now
from mailrelay.controller.settings import Settings
from mailrelay.kube.leader import Leadership

from support.fake_api import FakeApi
from support.wait import present

NS = "apps"
NAMES = [f"r{i}" for i in range(5)]


def drain(context: Context) -> None:
    while (item := context.queue.get(timeout=0)) is not None:
        context.process(*item)
        context.queue.done(item[0])


def deployment(api: FakeApi, name: str) -> dict[str, Any]:
    return present(api.cached("Deployment", NS, f"mailrelay-{name}"))


def as_an_older_operator_left_it(api: FakeApi, name: str) -> None:
    """The workload as the previous version rendered it: another version stamp, another pod template."""
    key = ("Deployment", NS, f"mailrelay-{name}")
    live = api.objects[key]
    live["metadata"]["annotations"][RENDERED_BY_ANNOTATION] = "0.0.9"
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/mailrelay-dev/postfix:0.0.9"
    api.roll_out("Deployment", NS, f"mailrelay-{name}")


def reason(api: FakeApi, name: str) -> str:
    return str(present(api.cached(KIND, NS, name))["status"]["conditions"][0]["reason"])


def test_the_gate_lets_n_roll_and_hands_the_next_slot_first_come_first_served() -> None:
    gate = RolloutGate(2)
    assert [gate.admit(k) for k in [("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]] == [True, True, False, False]
    assert gate.admit(("a", "1"))  # holding a slot already
    assert gate.admit(("a", "4")) is False and gate.counts() == (2, 2)
    assert gate.done(("a", "1")) == ("a", "3")  # the first in line gets the turn, not the latest to ask
    assert gate.admit(("a", "4")) is False and gate.admit(("a", "3")) and gate.counts() == (2, 1)


def test_an_upgrade_rolls_at_most_n_relays_at_once_and_the_next_when_one_is_ready() -> None:
    api = FakeApi()
    context = Context(api, Settings(max_rolling_relays=2), Leadership.unconditional("op"), rollouts=RolloutGate(2))
    for name in NAMES:
        api.relay(NS, name, mailFromFQDN=f"{name}.example.com", service={"name": f"mail-{name}"})
    context.resync()
    drain(context)
    for name in NAMES:
        api.roll_out("Deployment", NS, f"mailrelay-{name}")
    context.resync()
    drain(context)
    assert {reason(api, n) for n in NAMES} == {cond.AVAILABLE} and context.rollouts.counts() == (0, 0)

    for name in NAMES:  # the operator was upgraded: every Deployment is an older version's
        as_an_older_operator_left_it(api, name)
    writes = len(api.writes)
    context.resync()
    drain(context)
    applied = [name for verb, kind, name in api.writes[writes:] if (verb, kind) == ("apply", "Deployment")]
    assert applied == ["mailrelay-r0", "mailrelay-r1"] and context.rollouts.counts() == (2, 3)
    waiting = [n for n in NAMES if reason(api, n) == cond.ROLLOUT_WAITING]
    assert waiting == ["r2", "r3", "r4"]
    shown = present(api.cached(KIND, NS, "r2"))["status"]
    ready = next(c for c in shown["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"  # the running pods keep serving as they were
    assert deployment(api, "r2")["metadata"]["annotations"][RENDERED_BY_ANNOTATION] == "0.0.9"  # untouched

    api.roll_out("Deployment", NS, "mailrelay-r0")  # r0's new pods are ready: its slot goes to r2
    context.process((NS, "r0"), "child")
    assert context.queue.get(timeout=0) == ((NS, "r2"), "turn")
    context.queue.done((NS, "r2"))
    context.process((NS, "r2"), "turn")
    assert deployment(api, "r2")["metadata"]["annotations"][RENDERED_BY_ANNOTATION] != "0.0.9"
    assert context.rollouts.counts() == (2, 2)


def test_an_owners_edit_rolls_at_once_however_many_roll() -> None:
    api = FakeApi()
    context = Context(api, Settings(), Leadership.unconditional("op"), rollouts=RolloutGate(1))
    for name in ("busy", "edited"):
        api.relay(NS, name, mailFromFQDN=f"{name}.example.com", service={"name": f"mail-{name}"})
    context.resync()
    drain(context)  # both roll out (created: an owner's doing), each holding a slot past the limit
    api.roll_out("Deployment", NS, "mailrelay-edited")
    context.process((NS, "edited"), "child")
    api.edit(KIND, NS, "edited", messageSizeLimitBytes=20_000_000)
    writes = len(api.writes)
    context.process((NS, "edited"), "update")
    assert ("apply", "Deployment", "mailrelay-edited") in api.writes[writes:]


def test_a_new_leader_counts_the_rollouts_under_way_from_what_is() -> None:
    def workload(name: str, ready: int) -> dict[str, Any]:
        return {
            "metadata": {"name": f"mailrelay-{name}", "namespace": NS, "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": ready},
        }

    keys = rolling_now([workload("done", 2), workload("rolling", 1)], lambda w: (NS, w["metadata"]["name"]))
    assert keys == [(NS, "mailrelay-rolling")]
