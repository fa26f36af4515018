"""The kopf shell: what starts and stops while this replica leads.

kopf runs the operator's life: start-up and clean-up, signals, logging. It does not watch the relays:
its watch streams cannot tell a handler which objects vanished while a watch was down (after a
"410 Gone" it lists again and reports only what it finds), so a cache fed by them keeps relays that
were deleted meanwhile, and a pass over such a ghost writes its children again. The operator's own
informers (kube.informer) list and reconcile instead; everything they see goes into one work queue
(controller.context), and nothing is kept in kopf's progress storage, so no relay is ever annotated.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from mailrelay.controller import scrape
from mailrelay.controller.caches import Caches
from mailrelay.controller.context import SYNC_TIMEOUT, Context, relay_key, report_drain
from mailrelay.controller.rollouts import rolling_now

log = logging.getLogger("mailrelay")


def _context(memo: Any) -> Context:
    context: Context = memo.context
    return context


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.CRITICAL  # only the events we post on purpose, no log echoes
    # No resource of kopf's own to serve, so no scanning of namespaces or CRDs (the namespaced
    # manifests grant neither).
    settings.scanning.disabled = True


@kopf.on.startup()
async def start_leading(memo: kopf.Memo, **_: Any) -> None:
    """Caches first (every relay, child and relay pod listed), then the workers, the resync, the scrape."""
    context = _context(memo)
    caches: Caches = memo.caches
    stopping = memo.stopping = threading.Event()
    caches.subscribe(
        context.relay_event,
        context.child_event,
        lambda event, pod: report_drain(
            context,
            pod,
            lambda p: scrape.drained_pod_subject(caches, p),
            lambda p: scrape.drain_owner_known(caches, p),
        ),
        context.smarthost_event,
        context.namespace_event,
    )
    context.on_stop.append(caches.stop)
    caches.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SYNC_TIMEOUT
    while not caches.synced() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if not caches.synced():
        log.warning("caches not complete after %.0fs; starting the workers anyway", SYNC_TIMEOUT)
    for key in rolling_now(
        caches.cached_list("Deployment", None, {}) + caches.cached_list("StatefulSet", None, {}), relay_key
    ):
        context.rollouts.rolling(key)
    context.start_workers(stopping)
    log.info("caches listed (%d relays); %d workers started", len(caches.relays), context.settings.workers)
    if context.settings.delivery_probe:
        scraper = scrape.Scraper(
            caches,
            caches.api,
            lambda key: context.queue.add(key, "delivery"),
            interval=context.settings.resync_seconds,
            extra=context.egress_subjects,
        )
        context.health = scraper.health
        context.on_stop.append(scraper.stop)
        context.spawn(scraper.run, "scrape")


@kopf.on.cleanup()
async def stop_leading(memo: kopf.Memo, **_: Any) -> None:
    """First thing on shutdown: start no pass (the queue closes; running passes have their writes
    refused now), let the running ones end, then hand the Lease over while kopf winds down."""
    context = _context(memo)
    if "stopping" in memo:
        memo.stopping.set()
    context.leadership.resign()
    context.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + context.settings.leader.renew_deadline_seconds
    while context.busy() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    try:
        await loop.run_in_executor(None, context.release)
    except Exception as exc:
        log.warning("could not release the leader Lease (the next leader waits for it to expire): %s", exc)
