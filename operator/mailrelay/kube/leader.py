"""Leader election with a coordination.k8s.io/v1 Lease, with client-go's semantics.

Any number of identical replicas campaign for one Lease in the operator's namespace; the holder
renews it every retry period. A candidate takes the Lease over only when the holder's record has
not changed for a whole lease duration *by the candidate's own clock* (no clock comparison across
machines). The holder stops being the leader as soon as it has not renewed for the renew deadline,
which is shorter than the lease duration, so two replicas never reconcile at the same time unless a
process is frozen mid-write (and then the API's write guard refuses the write). `kubectl get lease
-n <namespace>` shows the holder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailrelay.kube.client import Api, ApiError, NotLeader

log = logging.getLogger("mailrelay.kube.leader")


@dataclass(frozen=True)
class LeaderElection:
    """client-go's defaults: a replica that stops renewing is replaced within lease + retry seconds."""

    namespace: str = "default"
    lease_name: str = "leader"
    pod_name: str = field(default_factory=socket.gethostname)
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_seconds} < {self.renew_deadline_seconds} < {self.lease_seconds}"
            )


def holder_identity(pod_name: str) -> str:
    """The pod name plus a random suffix, as client-go does: a restarted pod is a new candidate."""
    return f"{pod_name}_{secrets.token_hex(4)}"


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leadership:
    """Whether this process may reconcile now: it holds the Lease and renewed it within the deadline.

    `valid_until` is on the monotonic clock, which keeps counting while the process is stopped
    (SIGSTOP), so a replica that wakes up after its lease ran out knows it before it writes.
    """

    def __init__(self, identity: str, renew_deadline: float, clock: Callable[[], float] = time.monotonic):
        self.identity = identity
        self.renew_deadline = renew_deadline
        self.clock = clock
        self.valid_until: float | None = None
        self.given_up = False
        self.resigned = False  # given up on purpose (shutting down), not lost

    @classmethod
    def unconditional(cls, identity: str) -> Leadership:
        """For a process that is the only writer by construction (unit tests, tools)."""
        leadership = cls(identity, float("inf"))
        leadership.valid_until = float("inf")
        return leadership

    def renewed(self, at: float) -> None:
        """The Lease was written as ours by a request sent at `at`."""
        if not self.given_up:
            self.valid_until = at + self.renew_deadline

    def give_up(self) -> None:
        self.given_up = True
        self.valid_until = None

    def resign(self) -> None:
        """Stop leading on purpose: no pass starts and no write goes out from now on."""
        self.resigned = True
        self.give_up()

    def active(self) -> bool:
        return self.valid_until is not None and self.clock() < self.valid_until

    def check(self) -> None:
        if not self.active():
            raise NotLeader(f"{self.identity} does not hold the leader Lease")


@dataclass
class Observed:
    """The Lease record as last seen, and when (monotonic) it last changed."""

    spec: dict[str, Any]
    at: float


class LeaderElector:
    """One step at a time (`try_acquire_or_renew`), so the semantics are tested without waiting."""

    def __init__(
        self,
        api: Api,
        config: LeaderElection,
        leadership: Leadership,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
    ):
        self.api, self.config, self.leadership = api, config, leadership
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(UTC))
        self.observed: Observed | None = None
        self.url = api.path("Lease", config.namespace, config.lease_name)
        self.timeout = config.renew_deadline_seconds / 2

    @property
    def holder(self) -> str:
        return str((self.observed.spec if self.observed else {}).get("holderIdentity") or "")

    def _observe(self, spec: dict[str, Any], at: float) -> None:
        if self.observed is None or self.observed.spec != spec:
            self.observed = Observed(dict(spec), at)

    def try_acquire_or_renew(self) -> bool:
        """Take or keep the Lease if it is free, ours, or expired as far as we have seen; one round."""
        if self.leadership.resigned:
            return False
        started = self.clock()
        me, now = self.leadership.identity, micro_time(self.wall())
        lease = self.api.call("get lease", "GET", self.url, missing_ok=True, timeout=self.timeout)
        if lease is None:
            fresh = {
                "holderIdentity": me,
                "leaseDurationSeconds": int(self.config.lease_seconds),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            body = {
                "apiVersion": self.api.resources["Lease"].api_version,
                "kind": "Lease",
                "spec": fresh,
                "metadata": {"name": self.config.lease_name, "namespace": self.config.namespace},
            }
            return self._write("create lease", "POST", self.api.path("Lease", self.config.namespace), body, started)
        spec: dict[str, Any] = lease.get("spec") or {}
        self._observe(spec, started)
        holder = spec.get("holderIdentity") or ""
        assert self.observed is not None
        expired = self.observed.at + float(spec.get("leaseDurationSeconds") or 0) <= started
        if holder and holder != me and not expired:
            return False
        ours = holder == me
        new_spec = {
            **spec,
            "holderIdentity": me,
            "leaseDurationSeconds": int(self.config.lease_seconds),
            "renewTime": now,
            "acquireTime": spec.get("acquireTime") if ours else now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours or not holder else 1),
        }
        return self._write("update lease", "PUT", self.url, {**lease, "spec": new_spec}, started)

    def _write(self, what: str, method: str, url: str, body: dict[str, Any], started: float) -> bool:
        try:
            written = self.api.call(what, method, url, body=body, timeout=self.timeout, guarded=False)
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote first: they win this round
                return False
            raise
        assert written is not None
        self.leadership.renewed(started)
        self._observe(written.get("spec") or {}, started)
        return True

    def release(self) -> None:
        """Resign, and hand the Lease back (holder cleared) so another replica takes over at once.

        Call it once no pass is under way: the Lease is the only thing keeping others out."""
        self.leadership.resign()
        for _ in range(3):  # a renewal sent just before resigning may land first: then read again
            lease = self.api.call("get lease", "GET", self.url, missing_ok=True, timeout=self.timeout)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.leadership.identity:
                return
            now = micro_time(self.wall())
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now}
            try:
                self.api.call(
                    "release lease", "PUT", self.url, body={**lease, "spec": spec}, timeout=self.timeout, guarded=False
                )
            except ApiError as exc:
                if exc.status != 409:
                    raise
                continue
            log.info("released the leader Lease %s/%s", self.config.namespace, self.config.lease_name)
            return

    def retry_delay(self, jitter: float = 1.2) -> float:
        """client-go's wait between campaign rounds: the retry period plus up to 120 % jitter."""
        return self.config.retry_seconds * (1 + random.random() * jitter)


EXIT_LOST = 3  # the exit code of a replica that lost the Lease; the kubelet restarts it to campaign again


async def lead(
    elector: LeaderElector,
    work: Callable[[asyncio.Event], Awaitable[None]],
    stopping: asyncio.Event,
    executor: concurrent.futures.Executor,
) -> int:
    """Campaign until this replica holds the Lease (or `stopping` is set), then run `work(stopping)`
    while renewing. Returns 0 after a clean stop (the Lease released, for an immediate failover);
    when renewal fails past the renew deadline, the process exits at once with EXIT_LOST, as
    controller-runtime's managers do: nothing may reconcile after the Lease may be someone else's."""
    loop = asyncio.get_running_loop()
    config = elector.config
    log.info(
        "campaigning for the leader Lease %s/%s as %s", config.namespace, config.lease_name, elector.leadership.identity
    )
    holder = None
    while not stopping.is_set():
        try:
            if await loop.run_in_executor(executor, elector.try_acquire_or_renew):
                break
        except ApiError as exc:
            log.warning("leader election: %s", exc)
        if elector.holder != holder:
            holder = elector.holder
            log.info("the leader is %s; standing by", holder or "nobody")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), elector.retry_delay())
    else:
        return 0
    log.info("acquired the leader Lease %s/%s as %s", config.namespace, config.lease_name, elector.leadership.identity)
    keeper = asyncio.create_task(_keep(elector, executor), name="lease renewal")
    exit_when_lost = functools.partial(_exit_when_lost, elector.leadership)
    keeper.add_done_callback(exit_when_lost)
    try:
        await work(stopping)
    finally:
        keeper.remove_done_callback(exit_when_lost)
        keeper.cancel()
        try:
            await loop.run_in_executor(executor, elector.release)
        except ApiError as exc:
            log.warning("could not release the leader Lease (the next leader waits for it to expire): %s", exc)
    return 0


async def _keep(elector: LeaderElector, executor: concurrent.futures.Executor) -> None:
    """Renew every retry period; return once the last renewal is older than the renew deadline."""
    loop = asyncio.get_running_loop()
    leadership = elector.leadership
    while True:
        await asyncio.sleep(elector.config.retry_seconds)
        if leadership.resigned:
            return
        remaining = (leadership.valid_until or 0) - leadership.clock()
        if remaining <= 0:
            break
        try:
            renewed = await asyncio.wait_for(loop.run_in_executor(executor, elector.try_acquire_or_renew), remaining)
        except TimeoutError:
            break
        except ApiError as exc:
            log.warning("could not renew the leader Lease: %s", exc)
            continue
        if not renewed and elector.holder != leadership.identity:
            log.warning("the leader Lease was taken over by %s", elector.holder)
            break
    leadership.give_up()


def _exit_when_lost(leadership: Leadership, task: asyncio.Task[None]) -> None:
    if task.cancelled() or leadership.resigned:
        return
    log.error("lost the leader Lease (not renewed within the renew deadline); exiting to campaign again")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_LOST)
