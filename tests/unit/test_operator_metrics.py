"""The operator's metrics: passes by trigger, errors, durations, relays by condition, leader state.

tests/apiserver/test_metrics_endpoint.py scrapes them from a running operator.
"""

from __future__ import annotations

import pytest

from mailrelay.api import conditions as cond
from mailrelay.controller import metrics

from support.wait import present


def test_a_failed_pass_counts_as_an_error_of_its_trigger() -> None:
    def count(name: str, trigger: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"trigger": trigger}) or 0.0

    before = (
        count("mailrelay_operator_reconcile_passes_total", "child"),
        count("mailrelay_operator_reconcile_errors_total", "child"),
    )
    with pytest.raises(RuntimeError), metrics.timed_pass("Deployment event"):
        raise RuntimeError("the API went away")
    assert count("mailrelay_operator_reconcile_passes_total", "child") == before[0] + 1
    assert count("mailrelay_operator_reconcile_errors_total", "child") == before[1] + 1
    assert count("mailrelay_operator_reconcile_duration_seconds_count", "child") >= 1


def test_relays_are_counted_by_condition_and_replaced_each_time() -> None:
    ready = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available"},
            {"type": "Stalled", "status": "False", "reason": "AsExpected"},
            {"type": "Delivering", "status": "False", "reason": "SmarthostAuthFailed"},
        ]
    }
    metrics.count_relays([ready, ready, None])
    sample = metrics.REGISTRY.get_sample_value
    assert sample("mailrelay_operator_relays", {"condition": "Ready", "status": "True", "reason": "Available"}) == 2
    assert (
        sample(
            "mailrelay_operator_relays", {"condition": "Delivering", "status": "False", "reason": "SmarthostAuthFailed"}
        )
        == 2
    )
    metrics.count_relays([])
    assert sample("mailrelay_operator_relays", {"condition": "Ready", "status": "True", "reason": "Available"}) is None


def test_cluster_smarthosts_are_counted_apart_from_relays() -> None:
    not_ready = {"conditions": [{"type": "Ready", "status": "False", "reason": "SmarthostNotReady"}]}
    metrics.count_relays([not_ready], metrics.SMARTHOSTS)
    sample = metrics.REGISTRY.get_sample_value
    labels = {"condition": "Ready", "status": "False", "reason": "SmarthostNotReady"}
    assert sample("mailrelay_operator_cluster_smarthosts", labels) == 1
    assert sample("mailrelay_operator_relays", labels) is None
    metrics.count_relays([], metrics.SMARTHOSTS)
    assert sample("mailrelay_operator_cluster_smarthosts", labels) is None


def test_the_leader_gauge_reads_the_lease_state_at_each_scrape() -> None:
    from mailrelay.kube.leader import Leadership

    now = [100.0]
    leadership = Leadership("op-1", renew_deadline=10.0, clock=lambda: now[0])
    metrics.follow_leadership(leadership)

    def leader() -> float | None:
        return metrics.REGISTRY.get_sample_value("mailrelay_operator_leader")

    assert leader() == 0  # a candidate
    leadership.renewed(100.0)
    assert leader() == 1
    now[0] = 111.0  # the renew deadline passed with no renewal: no longer sure it leads
    assert leader() == 0
    leadership.renewed(111.0)
    leadership.resign()
    assert leader() == 0


def test_passes_are_counted_by_trigger_and_read_the_last_delivery_report() -> None:
    """No pass asks the pods: the scrape's loop does, and every pass reads its last report."""
    from mailrelay.api.names import KIND
    from mailrelay.controller import delivery
    from mailrelay.controller.context import Context
    from mailrelay.controller.settings import Settings
    from mailrelay.kube.leader import Leadership

    from support.fake_api import FakeApi

    api = FakeApi()
    api.relay("apps", "counted", mailFromFQDN="apps.example.com")
    reports: dict[tuple[str, str], delivery.Health] = {}
    context = Context(api, Settings(), Leadership.unconditional("op"), health=reports.get)

    def passes(trigger: str) -> float:
        return metrics.REGISTRY.get_sample_value("mailrelay_operator_reconcile_passes_total", {"trigger": trigger}) or 0

    before = passes("create"), passes("child"), passes("resync")
    context.process(("apps", "counted"), "create")
    context.process(("apps", "counted"), "child")
    assert not [
        c for c in present(api.get(KIND, "apps", "counted"))["status"]["conditions"] if c["type"] == cond.DELIVERING
    ]
    reports[("apps", "counted")] = delivery.Health(
        "False",
        cond.AUTH_FAILED,
        "2 messages deferred: 535 5.7.8 refused",
        {"active": 0, "deferred": 2, "hold": 0, "incoming": 0, "oldestMessageAge": "under 10s"},
    )
    context.resync()
    item = context.queue.get(timeout=0)
    assert item == (("apps", "counted"), "resync")
    context.process(*item)
    assert (passes("create"), passes("child"), passes("resync")) == (before[0] + 1, before[1] + 1, before[2] + 1)
    status = present(api.get(KIND, "apps", "counted"))["status"]
    [condition] = [c for c in status["conditions"] if c["type"] == cond.DELIVERING]
    assert (condition["status"], condition["reason"]) == ("False", cond.AUTH_FAILED)
    assert status["queue"]["deferred"] == 2
    context.resync()  # counts the relays as the cache holds them now
    assert (
        metrics.REGISTRY.get_sample_value(
            "mailrelay_operator_relays", {"condition": "Delivering", "status": "False", "reason": cond.AUTH_FAILED}
        )
        == 1
    )
