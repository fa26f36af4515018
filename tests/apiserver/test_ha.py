"""High availability as shipped: the replicas of each HA variant, started exactly as their manifests say.

The Deployment is taken from `kubectl kustomize manifests/cluster-wide-ha` and from `helm template`
with `replicas=2`; each replica runs the image's ENTRYPOINT with the container's args and env (the
downward API filled in as the kubelet would: its own pod name, the Deployment's namespace). Only
the liveness and metrics ports are moved off 8080 and 9090, as the replicas share this machine's loopback instead of
having one network namespace each. Each replica reaches the API server through its own TCP proxy,
so one replica can be cut off (a network split) while the others keep talking.

Against the real control plane (kube-apiserver, etcd, controller-manager, kwok), with the variant's
objects applied and each replica using a token of the shipped ServiceAccount.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailrelay.controller.settings import LeaderElection

from support.ha import VARIANTS, Backend, Fleet
from support.operator import PORT_ARG
from support.samples import relay
from support.tools import objects, run
from support.wait import eventually

FAILOVER_LIMIT = 30.0


@pytest.fixture
def fleet(request: pytest.FixtureRequest, backend: Backend, tools: Path, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(backend, objects(run(tools, *VARIANTS[request.param])), tmp_path)
    try:
        yield fleet
    finally:
        for replica in fleet.replicas:
            replica.stop()
        for replica in fleet.replicas:
            print(f"--- {replica.pod_name}\n{replica.log()[-3000:]}")


@pytest.mark.parametrize("fleet", list(VARIANTS), indirect=True)
def test_identical_replicas_elect_one_leader_and_fail_over(fleet: Fleet) -> None:
    assert len(fleet.replicas) >= 2, "an HA variant runs more than one replica"
    # Identical replicas: the same command line (but the moved ports), the same settings.
    assert len({tuple(PORT_ARG.sub(r"--\1-port=", a) for a in r.command) for r in fleet.replicas}) == 1
    assert (
        len(
            {
                tuple(sorted((k, v) for k, v in r.env.items() if k not in ("POD_NAME", "KUBECONFIG")))
                for r in fleet.replicas
            }
        )
        == 1
    )
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    standbys = [r for r in fleet.replicas if r is not leader]

    # Exactly one reconciles; the others answer their liveness probe while standing by.
    ha_one = fleet.namespace("ha-one")
    fleet.api.create(relay(ha_one))
    fleet.wait_children(ha_one)
    eventually(lambda: fleet.reconciled_by(ha_one) == [leader], what="the leader's pass")
    time.sleep(3)  # more than a resync period of the standbys, had they one
    assert fleet.reconciled_by(ha_one) == [leader]
    for standby in standbys:
        assert "standing by" in standby.log()
        health = eventually(standby.health, what="a standby's /healthz")
        assert health["leader"] is False and health["identity"].startswith(standby.pod_name)
    assert eventually(leader.health, what="the leader's /healthz")["leader"] is True

    # SIGKILL: no goodbye, the Lease must run out. Measure until a relay created now is reconciled.
    killed_at = time.monotonic()
    leader.signal(signal.SIGKILL)
    ha_failover = fleet.namespace("ha-failover")
    fleet.api.create(relay(ha_failover))
    fleet.wait_children(ha_failover, timeout=FAILOVER_LIMIT + 10)
    failover = time.monotonic() - killed_at
    print(f"failover after SIGKILL: {failover:.1f} s")
    assert failover < FAILOVER_LIMIT
    successor = fleet.leader()
    assert successor is not leader
    eventually(lambda: fleet.reconciled_by(ha_failover) == [successor], what="the successor's pass")
    leader.start()  # the kubelet restarts the killed container; it stands by
    eventually(lambda: "standing by" in leader.log().split("campaigning")[2], what="the restarted replica to stand by")

    # SIGTERM (a rolling update, a drain): the Lease is handed over, not left to expire.
    stopped_at = time.monotonic()
    successor.signal(signal.SIGTERM)
    ha_handover = fleet.namespace("ha-handover")
    fleet.api.create(relay(ha_handover))
    fleet.wait_children(ha_handover)
    handover = time.monotonic() - stopped_at
    print(f"handover after SIGTERM: {handover:.1f} s")
    assert successor.process is not None and successor.process.wait(30) == 0
    assert "released the leader Lease" in successor.log()
    assert handover < float(LeaderElection().lease_seconds)  # sooner than an expiry could allow
    assert fleet.leader() is leader


@pytest.mark.parametrize("fleet", ["kustomize-cluster-wide-ha"], indirect=True)
def test_a_split_leader_stops_before_another_starts(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    split_before = fleet.namespace("split-before")
    fleet.api.create(relay(split_before))
    fleet.wait_children(split_before)
    holder = fleet.holder()
    leader.proxy.cut()  # the leader can no longer renew, and hears nothing back
    cut_at = time.monotonic()
    exited_at = taken_at = None
    while taken_at is None and time.monotonic() - cut_at < 60:
        if exited_at is None and leader.exit_code() is not None:
            exited_at = time.monotonic()
        if fleet.holder() not in ("", holder):
            taken_at = time.monotonic()
        time.sleep(0.05)
    assert exited_at is not None and taken_at is not None, (exited_at, taken_at)
    print(
        f"split: old leader exited {exited_at - cut_at:.1f} s after the cut, "
        f"the new one took the Lease {taken_at - cut_at:.1f} s after it"
    )
    assert exited_at < taken_at  # never two leaders, not even for a moment
    assert leader.exit_code() not in (0, None)  # a lost Lease is an error exit, so the kubelet restarts it
    assert "lost the leader Lease" in leader.log()
    split_after = fleet.namespace("split-after")
    fleet.api.create(relay(split_after))
    fleet.wait_children(split_after)
    successor = fleet.leader()
    eventually(lambda: fleet.reconciled_by(split_after) == [successor], what="the new leader's pass")


@pytest.mark.parametrize("fleet", ["helm-replicas-2"], indirect=True)
def test_a_frozen_leader_that_wakes_up_writes_nothing_and_exits(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.start()
    leader = fleet.leader()
    holder = fleet.holder()
    leader.signal(signal.SIGSTOP)
    eventually(lambda: fleet.holder() not in ("", holder), what="another replica to take over", timeout=40)
    frozen = fleet.namespace("frozen")
    fleet.api.create(relay(frozen))
    fleet.wait_children(frozen)
    eventually(lambda: fleet.reconciled_by(frozen), what="the new leader's pass")
    woken_log = len(leader.log())
    leader.signal(signal.SIGCONT)
    eventually(lambda: leader.exit_code() is not None, what="the woken leader to exit", timeout=15)
    assert leader.exit_code() != 0
    after = leader.log()[woken_log:]
    assert "lost the leader Lease" in after and "reconciled" not in after
    successor = fleet.leader()
    assert fleet.reconciled_by(frozen) == [successor]
