"""The operator while it leads: caches, one work queue, its workers, the resync tick and the delivery scrape.

Every trigger ends in `queue.add(key)`: a relay's watch event, a child's (through its controller
owner reference), the resync tick (every relay in the cache), a changed delivery report. Workers
take keys one at a time per key and run the same pass (mailrelay.controller.reconcile); a failed
pass is retried with the key's backoff whatever triggered it. Nothing is kept in module globals,
so a test builds a Context on an in-memory API and runs `process` by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailrelay.api import conditions as cond
from mailrelay.api.names import KIND, SMARTHOST_KIND
from mailrelay.controller import drainreport, heap, metrics, smarthosts
from mailrelay.controller.execute import Writer
from mailrelay.controller.observe import Key, Memory, Platform, Reader
from mailrelay.controller.queue import WorkQueue
from mailrelay.controller.reconcile import Pass, Renders, now, run
from mailrelay.controller.rollouts import RolloutGate
from mailrelay.controller.settings import Settings
from mailrelay.kube.client import ApiError, NotLeader
from mailrelay.kube.leader import Leadership
from mailrelay.render import egress
from mailrelay.render.relay import workload_kind

log = logging.getLogger("mailrelay")
SYNC_TIMEOUT = 120.0
AGAIN_SECONDS = 0.5  # a pass that learnt something (a name taken, a refusal, a stale body) runs again


class Store(Reader, Writer, Protocol):
    """The caches with the API behind them (controller.caches.Caches), or an in-memory API in tests."""


def relay_key(obj: dict[str, Any]) -> Key | None:
    """The relay a child belongs to: its controller owner reference, if that is a MailRelay (or a
    ClusterSmarthost, whose egress tier it is part of)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and meta.get("namespace"):
            return meta["namespace"], str(ref.get("name"))
        if ref.get("controller") and ref.get("kind") == SMARTHOST_KIND:
            return smarthosts.key(str(ref.get("name")))
    return None


@dataclass
class Context:
    store: Store
    settings: Settings
    leadership: Leadership
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    clock: Callable[[], str] = now  # the time written into conditions
    release: Callable[[], None] = lambda: None  # hands the leader Lease back (LeaderElector.release)
    memory: Memory = field(default_factory=Memory)
    renders: Renders = field(default_factory=Renders)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    health: Callable[[Key], Any] = lambda key: None  # the delivery scrape's last report of a relay
    platform: Platform = field(default_factory=Platform)  # ClusterSmarthosts: served? their egress tiers' namespace
    rollouts: RolloutGate = field(default_factory=lambda: RolloutGate(5))  # replaced from the settings in run
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _generations: dict[str, int] = field(default_factory=dict)  # each ClusterSmarthost's last generation seen
    _drains: set[str] = field(default_factory=set)  # uids of drained pods waiting for another look
    _drain_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- one pass --------------------------------------------------------------------------------
    def process(self, key: Key, why: str = "") -> Pass | smarthosts.SmarthostPass | None:
        """One pass over relay (or ClusterSmarthost) `key` as the cache holds it now; None when it is gone."""
        self.leadership.check()
        if smarthosts.is_key(key):
            return self._process_smarthost(key, why)
        body = self.store.cached(KIND, *key)
        if body is None:
            self.memory.forget(key)
            self._rolled(key)
            return None
        with metrics.timed_pass(why or "resync"):
            done = run(
                self.store,
                self.store,
                self.memory,
                self.renders,
                body,
                clock=self.clock(),
                default_image=self.settings.postfix_image,
                instance=self.leadership.identity,
                health=self.health(key),
                platform=self.platform,
                admit=lambda: self.rollouts.admit(key),
                require_grant=self.settings.require_secret_grant,
            )
        kind = done.seen.relay and workload_kind(done.seen.relay)
        if any(w.kind == kind and w.action != "delete" for w in done.plan.writes) and done.outcome.done:
            self.rollouts.rolling(key)  # a new pod template: this relay holds a slot until it is rolled out
        elif done.plan.assessment.reason in (cond.AVAILABLE, cond.SCALED_TO_ZERO):
            self._rolled(key)
        metrics.ROLLOUTS.labels("rolling").set(self.rollouts.counts()[0])
        metrics.ROLLOUTS.labels("waiting").set(self.rollouts.counts()[1])
        return done

    def _rolled(self, key: Key) -> None:
        """`key` holds no slot any more: the next relay waiting for one gets its turn."""
        turn = self.rollouts.done(key)
        if turn is not None:
            self.queue.add(turn, "turn")

    def _process_smarthost(self, key: Key, why: str) -> smarthosts.SmarthostPass | None:
        body = self.store.cached(SMARTHOST_KIND, "", key[1])
        if body is None:
            self.memory.forget(key)
            return None
        with metrics.timed_pass(why or "resync"):
            done = smarthosts.run(
                self.store,
                self.store,
                self.memory,
                body,
                platform=self.platform,
                default_image=self.settings.postfix_image,
                clock=self.clock(),
                instance=self.leadership.identity,
                health=self.health(key),
            )
        for relay in done.relays:  # they derive their logins from the keys just made
            self.queue.add(relay, "smarthost")
        return done

    def work(self) -> None:
        """A worker: take a key, run its pass, retry it with backoff when the pass fails."""
        while (item := self.queue.get()) is not None:
            key, why = item
            try:
                done = self.process(key, why)
                self.queue.forget(key)
                if done is not None and done.outcome.again:  # learnt something: decide again with it
                    self.queue.add_after(key, AGAIN_SECONDS, "again")
                if done is not None and done.again_in is not None:  # an access token to refresh in time
                    self.queue.add_after(key, done.again_in, "token")
            except NotLeader as exc:
                log.warning("no pass for %s/%s: %s", *key, exc)
            except ApiError as exc:
                metrics.RETRIES.inc()
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile of %s/%s failed, again in %.0fs: %s", *key, delay, exc)
            except Exception:  # a worker must outlive any one bad pass
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile of %s/%s failed, again in %.0fs", *key, delay)
            finally:
                self.queue.done(key)

    # -- triggers --------------------------------------------------------------------------------
    def relay_event(self, event: str, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.queue.add(key, {"LISTED": "resume", "ADDED": "create", "MODIFIED": "update"}.get(event, "delete"))
        name = smarthosts.referenced(obj)
        if name is not None and self.platform.served:  # its tenant list may change
            self.queue.add(smarthosts.key(name), "tenant")

    def smarthost_event(self, event: str, obj: dict[str, Any]) -> None:
        """A ClusterSmarthost: its own pass; and its relays', unless only its status changed."""
        name = obj["metadata"]["name"]
        self.queue.add(
            smarthosts.key(name), {"LISTED": "resume", "ADDED": "create", "MODIFIED": "update"}.get(event, "delete")
        )
        generation = int(obj["metadata"].get("generation") or 0)
        if event == "DELETED":
            self._generations.pop(name, None)
        elif self._generations.get(name) == generation:
            return
        else:
            self._generations[name] = generation
        for relay in smarthosts.relays_of(self.store, name):
            self.queue.add((relay["metadata"]["namespace"], relay["metadata"]["name"]), "smarthost")

    def namespace_event(self, event: str, obj: dict[str, Any]) -> None:
        """A namespace's labels decide what its relays may do with a ClusterSmarthost."""
        for relay in self.store.cached_list(KIND, obj["metadata"]["name"], {}):
            name = smarthosts.referenced(relay)
            if name is not None:
                self.queue.add((relay["metadata"]["namespace"], relay["metadata"]["name"]), "namespace")
                self.queue.add(smarthosts.key(name), "namespace")

    def child_event(self, event: str, obj: dict[str, Any]) -> None:
        key = relay_key(obj)
        if key is not None:
            self.queue.add(key, "child")

    def resync(self) -> None:
        """Every relay once more: Secrets created or rotated, foreign objects gone, whatever failed."""
        relays = self.store.cached_list(KIND, None, {})
        for relay in relays:
            self.queue.add((relay["metadata"]["namespace"], relay["metadata"]["name"]), "resync")
        served = self.store.cached_list(SMARTHOST_KIND, None, {}) if self.platform.served else []
        for smarthost in served:
            self.queue.add(smarthosts.key(smarthost["metadata"]["name"]), "resync")
        metrics.count_relays((smarthost.get("status") for smarthost in served), metrics.SMARTHOSTS)
        metrics.count_relays(relay.get("status") for relay in relays)
        metrics.track_tokens((relay, relay.get("status")) for relay in relays)
        del relays
        heap.trim()  # every relay was decoded from the caches' JSON just now

    def egress_subjects(self) -> list[tuple[Key, dict[str, Any]]]:
        """What the delivery scrape asks for each ClusterSmarthost: its egress tier's pods."""
        found = []
        for smarthost in self.store.cached_list(SMARTHOST_KIND, None, {}) if self.platform.served else []:
            meta = smarthost["metadata"]
            where = {
                "namespace": self.platform.namespace,
                "name": egress.relay_name(meta["name"]),
                "uid": meta.get("uid"),
            }
            subject = {"metadata": where}
            found.append((smarthosts.key(meta["name"]), subject))
        return found

    # -- while leading -----------------------------------------------------------------------------
    def spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_workers(self, stopping: threading.Event) -> None:
        for number in range(self.settings.workers):
            self.spawn(self.work, f"worker-{number}")

        def tick() -> None:
            while not stopping.wait(self.settings.resync_seconds):
                self.resync()

        self.spawn(tick, "resync")

    def busy(self) -> bool:
        return not self.queue.idle()

    def stop(self) -> None:
        self.queue.shutdown()
        for stop in self.on_stop:
            stop()


def report_drain(
    context: Context,
    pod: dict[str, Any],
    subject: Callable[[dict[str, Any]], Any],
    known: Callable[[dict[str, Any]], bool] = lambda pod: True,
    attempt: int = 0,
) -> None:
    """A relay pod whose preStop drain left mail behind: an Event (see drainreport) on what `subject`
    says the pod belongs to; nothing for a pod that only looks like a relay's. A pod whose controller
    the caches do not hold yet (`known`), or whose Event could not be posted, is looked at again
    (DRAIN_RETRIES), so no report is lost to a watch that delivered the pod first or to one API error."""
    if not drainreport.left_behind(pod):
        return
    about = subject(pod)
    name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    if about is None and not known(pod) and _drain_again(context, pod, subject, known, attempt):
        return
    if about is None:
        log.warning("pod %s looks like a relay's but no relay's workload controls it: no drain report", name)
        return
    try:
        drainreport.report(context.store, pod, about, context.leadership.identity)
    except ApiError as exc:
        if not _drain_again(context, pod, subject, known, attempt):
            log.warning("drain report of pod %s failed: %s", name, exc)


DRAIN_RETRIES = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each new look at a drained pod


def _drain_again(
    context: Context,
    pod: dict[str, Any],
    subject: Callable[[dict[str, Any]], Any],
    known: Callable[[dict[str, Any]], bool],
    attempt: int,
) -> bool:
    """Look at `pod` again later, as the caches then hold it (or as it was, once deleted); False when
    its looks are used up. One look waits per pod, however many watch events it has meanwhile."""
    uid = str(pod["metadata"].get("uid", ""))
    if attempt >= len(DRAIN_RETRIES):
        return False
    with context._drain_lock:
        if uid in context._drains:
            return True
        context._drains.add(uid)

    def look() -> None:
        with context._drain_lock:
            context._drains.discard(uid)
        try:
            context.leadership.check()  # a replica that lost the Lease posts nothing
        except NotLeader:
            return
        meta = pod["metadata"]
        newer = context.store.cached("Pod", meta["namespace"], meta["name"])
        same = newer is not None and newer["metadata"].get("uid") == meta.get("uid")
        report_drain(context, newer if same and newer is not None else pod, subject, known, attempt + 1)

    timer = threading.Timer(DRAIN_RETRIES[attempt], look)
    timer.daemon = True
    timer.start()
    return True
