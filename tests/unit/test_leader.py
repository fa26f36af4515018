"""Leader election semantics, one round at a time, on an in-memory Lease and clocks the test moves.

The processes, the manifests and the failover are tested in test_ha.py; here each rule of client-go's
algorithm is pinned: who may take the Lease and when, and when a holder must stop reconciling.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailrelay.controller.settings import LeaderElection, Settings, SettingsError
from mailrelay.kube.leader import LeaderElector, Leadership, holder_identity

from support.fake_api import FakeApi
from support.wait import present

CONFIG = LeaderElection(namespace="mailrelay-system", lease_name="mailrelay-operator", pod_name="op-0")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/mailrelay-system/leases"


def lease(store: FakeApi) -> dict[str, Any]:
    found = store.objects.get(("Lease", CONFIG.namespace, CONFIG.lease_name))
    assert found is not None
    return found


def holder(store: FakeApi) -> str:
    found = store.objects.get(("Lease", CONFIG.namespace, CONFIG.lease_name)) or {}
    return str((found.get("spec") or {}).get("holderIdentity") or "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def candidate(store: FakeApi, clock: Clock, pod: str) -> LeaderElector:
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    leadership = Leadership(holder_identity(pod), CONFIG.renew_deadline_seconds, clock=clock)
    return LeaderElector(
        store,
        CONFIG,
        leadership,
        clock=clock,
        wall=lambda: wall + timedelta(seconds=clock.now),
    )


@pytest.fixture
def store() -> Iterator[FakeApi]:
    """One Lease behind GET/POST/PUT with resourceVersion preconditions, as the API server keeps it."""
    api = FakeApi()
    yield api
    assert all(url.startswith(LEASES) for _, url, _ in api.calls)  # nothing but the Lease
    assert not [url for method, url, guarded in api.calls if method != "GET" and guarded], (
        "the election's writes bypass the write guard"
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_first_candidate_creates_the_lease_and_leads(store: FakeApi, clock: Clock) -> None:
    first = candidate(store, clock, "op-0")
    assert first.try_acquire_or_renew() and first.leadership.active()
    assert holder(store) == first.leadership.identity and holder(store).startswith("op-0_")
    spec = lease(store)["spec"]
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]  # MicroTime


def test_a_pod_restarted_under_the_same_name_is_a_new_candidate() -> None:
    assert holder_identity("op-0") != holder_identity("op-0")


def test_others_stand_by_while_the_holder_renews(store: FakeApi, clock: Clock) -> None:
    leader, other = candidate(store, clock, "op-0"), candidate(store, clock, "op-1")
    assert leader.try_acquire_or_renew()
    for _ in range(30):  # a minute of renewals every 2 s
        clock.now += 2
        assert leader.try_acquire_or_renew()
        assert not other.try_acquire_or_renew()
    assert not other.leadership.active() and holder(store) == leader.leadership.identity


def test_a_silent_holder_is_replaced_after_the_lease_duration_by_the_candidates_clock(
    store: FakeApi, clock: Clock
) -> None:
    leader, other = candidate(store, clock, "op-0"), candidate(store, clock, "op-1")
    assert leader.try_acquire_or_renew()
    clock.now += 100  # the candidate starts long after: it must still wait a whole lease from now
    assert not other.try_acquire_or_renew()
    clock.now += 14.9
    assert not other.try_acquire_or_renew()
    assert not leader.leadership.active()  # the holder stopped reconciling long before
    clock.now += 0.2
    assert other.try_acquire_or_renew() and other.leadership.active()
    assert lease(store)["spec"]["leaseTransitions"] == 1
    clock.now += 1
    assert not leader.try_acquire_or_renew()  # the old holder sees the new one, and stays out


def test_the_holder_stops_leading_before_anyone_else_may_start(store: FakeApi, clock: Clock) -> None:
    leader, other = candidate(store, clock, "op-0"), candidate(store, clock, "op-1")
    assert leader.try_acquire_or_renew()
    assert not other.try_acquire_or_renew()  # the other observes the record at the same moment
    store.down = True  # a split: renewals fail
    stopped = started = None
    while started is None:
        clock.now += 0.5
        if stopped is None and not leader.leadership.active():
            stopped = clock.now
        if clock.now >= 1012:
            store.down = False  # the split heals for the other candidate only
        if not store.down and other.try_acquire_or_renew():
            started = clock.now
    assert stopped is not None and stopped <= 1000 + CONFIG.renew_deadline_seconds < started
    assert started - stopped >= CONFIG.lease_seconds - CONFIG.renew_deadline_seconds


def test_release_lets_another_take_over_at_once(store: FakeApi, clock: Clock) -> None:
    leader, other = candidate(store, clock, "op-0"), candidate(store, clock, "op-1")
    assert leader.try_acquire_or_renew()
    assert not other.try_acquire_or_renew()
    leader.release()
    assert holder(store) == "" and not leader.leadership.active()
    assert not leader.try_acquire_or_renew() and holder(store) == ""  # a resigned replica stays out
    clock.now += 0.1
    assert other.try_acquire_or_renew()


def test_release_reads_again_when_a_renewal_lands_first(
    store: FakeApi, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = candidate(store, clock, "op-0")
    assert leader.try_acquire_or_renew()
    original_call = store.call
    renewal: list[int] = []

    def renewal_lands_first(what: str, method: str, url: str, body: Any = None, **kw: Any) -> Any:
        if method == "PUT" and not renewal:  # the renewal sent before resigning overtakes the release
            renewal.append(1)
            lease = present(original_call("get", "GET", url))
            original_call("renew", "PUT", url, {**lease, "spec": {**lease["spec"], "renewTime": "later"}}, **kw)
        return original_call(what, method, url, body, **kw)

    monkeypatch.setattr(store, "call", renewal_lands_first)
    leader.release()
    assert renewal and holder(store) == ""


def test_two_candidates_racing_for_a_free_lease_get_one_leader(
    store: FakeApi, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = candidate(store, clock, "op-0"), candidate(store, clock, "op-1")
    assert first.try_acquire_or_renew()
    lease(store)["spec"]["holderIdentity"] = ""  # released
    # Both read the same free record; the second write carries a stale resourceVersion.
    original_call = store.call
    seen: dict[str, Any] = {}

    def racing(what: str, method: str, url: str, body: Any = None, **kw: Any) -> Any:
        if method == "GET":
            seen.setdefault("lease", original_call(what, method, url, body, **kw))
            return copy.deepcopy(seen["lease"])
        return original_call(what, method, url, body, **kw)

    monkeypatch.setattr(store, "call", racing)
    results = [second.try_acquire_or_renew(), first.try_acquire_or_renew()]
    assert results.count(True) == 1


def test_leader_election_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElection(lease_seconds=10, renew_deadline_seconds=10, retry_seconds=2)
    settings = Settings.from_environment(
        {
            "POD_NAMESPACE": "ops",
            "POD_NAME": "op-7",
            "MAILRELAY_LEASE_NAME": "mr",
            "MAILRELAY_POSTFIX_IMAGE": "mirror/postfix:1",
        }
    )
    assert (settings.leader.namespace, settings.leader.pod_name, settings.leader.lease_name) == ("ops", "op-7", "mr")
    assert settings.postfix_image == "mirror/postfix:1"
    with pytest.raises(SettingsError, match="MAILRELAY_RESYNC_SECONDS"):
        Settings.from_environment({"MAILRELAY_RESYNC_SECONDS": "soon"})
    assert [Settings().retry_delay(n) for n in (0, 1, 2, 20)] == [1, 2, 4, 300]
