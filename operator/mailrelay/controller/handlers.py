"""The kopf shell: which events start a reconcile pass, and how the operator process runs.

Triggers: the relay's create/update/resume (retried by kopf with exponential backoff when the API
fails), any event of a child we own, from the child index's own watches rather than kopf's (so a
deleted or edited child is restored within seconds and Deployment readiness reaches the status at
once, and each child event is decoded once), and the periodic resync (mailrelay.controller.resync).
Every trigger runs the same `reconcile` on a freshly read relay; no `on.delete` and no finalizer:
children carry a controller owner reference and the garbage collector removes them.

The process first campaigns for the leader Lease (mailrelay.kube.leader); only the holder starts kopf
(standalone, no kopf peering), so kopf's watches and the resync obey the same single decision.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import signal
import sys
from typing import Any

import aiohttp.web
import kopf
import kubernetes

from mailrelay.api import names
from mailrelay.controller import drainreport, metrics
from mailrelay.controller.client import OperatorApi
from mailrelay.controller.context import Context
from mailrelay.controller.resync import resync_loop
from mailrelay.controller.scrape import RelayProbe
from mailrelay.controller.settings import Settings, SettingsError
from mailrelay.kube.client import Api, ApiError, NotLeader
from mailrelay.kube.informer import ChildIndex
from mailrelay.kube.leader import LeaderElector, Leadership, holder_identity, lead

log = logging.getLogger("mailrelay")


def _context(memo: Any) -> Context:
    context: Context = memo.context
    return context


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours = _context(memo).settings
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_ANNOTATION_PREFIX, key=names.KOPF_DIFFBASE_KEY
    )
    settings.persistence.finalizer = names.KOPF_FINALIZER  # unused: no handler needs one
    settings.posting.level = logging.CRITICAL  # only the events we post on purpose, no log echoes
    settings.execution.max_workers = ours.workers
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    settings.watching.server_timeout = ours.watch_timeout
    settings.watching.client_timeout = ours.watch_timeout + 30
    # Serving named namespaces needs no list of all namespaces (nor CRD watching): the namespaced
    # manifests grant neither, and a refused scan would only retry, warn and fall back to the names.
    settings.scanning.disabled = bool(_context(memo).namespaces)


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    context = _context(memo)
    context.child_pool = concurrent.futures.ThreadPoolExecutor(context.settings.workers, thread_name_prefix="child")
    context.index = ChildIndex(
        context.api,
        names.CHILD_LABELS,
        (*names.CHILD_KINDS, *names.MODE_CHILD_KINDS),
        context.namespaces,
        on_change=lambda body: child_changed(context, body),
        passed={"Pod": lambda pod: drain_report(context, pod)},
    )
    context.index.start()
    memo["resync"] = asyncio.create_task(resync_loop(context), name="resync")


@kopf.on.cleanup()
async def stop_leading(memo: kopf.Memo, **_: Any) -> None:
    """First thing on shutdown: stop the resync, start no pass, let the running ones end (their
    writes are refused now), then hand the Lease over, while kopf winds down its watches."""
    task = memo.get("resync")
    if task is not None:
        task.cancel()
    context = _context(memo)
    if context.index is not None:
        context.index.stop()
    if context.child_pool is not None:
        context.child_pool.shutdown(wait=False, cancel_futures=True)
    context.leadership.resign()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + context.settings.leader.renew_deadline_seconds
    while len(context.locks) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    try:
        await loop.run_in_executor(None, context.release)
    except ApiError as exc:
        log.warning("could not release the leader Lease (the next leader waits for it to expire): %s", exc)


@kopf.on.resume(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.create(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.update(names.GROUP, names.VERSION, names.PLURAL)
def on_relay(body: kopf.Body, reason: str, retry: int, memo: kopf.Memo, **_: Any) -> None:
    """API errors are retried by kopf, with exponential backoff. A stalled relay (a missing Secret,
    a foreign Service) is not: kopf would record every retry in the relay's annotations, a write
    each time; the resync loop comes back to it instead, writing nothing until something changed."""
    context = _context(memo)
    try:
        context.run_pass(copy.deepcopy(dict(body)), str(reason))
    except ApiError as exc:
        metrics.RETRIES.inc()
        raise kopf.TemporaryError(str(exc), delay=context.settings.retry_delay(retry)) from exc


def _owner(body: dict[str, Any]) -> dict[str, Any] | None:
    refs = body.get("metadata", {}).get("ownerReferences") or []
    return next(
        (
            r
            for r in refs
            if r.get("controller")
            and r.get("kind") == names.KIND
            and r.get("apiVersion", "").startswith(f"{names.GROUP}/")
        ),
        None,
    )


def child_changed(context: Context, body: dict[str, Any]) -> None:
    """A child changed (a watch event of the child index): queue a pass of its relay, unless one is
    queued already."""
    owner = _owner(body)
    namespace = (body.get("metadata") or {}).get("namespace")
    if owner is None or namespace is None or context.child_pool is None:
        return
    uid = str(owner.get("uid", ""))
    if context.child_queue.add(uid):
        context.child_pool.submit(_child_pass, context, namespace, owner, str(body.get("kind", "child")))


def _child_pass(context: Context, namespace: str, owner: dict[str, Any], kind: str) -> None:
    """The pass after a child event. A failure is left to the next resync."""
    uid = str(owner.get("uid", ""))
    context.child_queue.started(uid)

    def start() -> None:
        relay = context.api.get(names.KIND, namespace, owner["name"])  # read only now: it sees every event so far
        if relay is not None and relay["metadata"].get("uid") == uid:
            context.run_held(relay, f"{kind} event")

    try:
        context.leadership.check()
        context.child_passes.run(uid, context.locks.hold, start)
    except NotLeader as exc:
        log.warning("no pass after a %s event: %s", kind, exc)
    except ApiError as exc:
        log.warning("reconcile of %s/%s after a child event failed: %s", namespace, owner["name"], exc)
    except Exception:  # the pool must outlive any one bad pass
        log.exception("reconcile of %s/%s after a child event failed", namespace, owner["name"])


def drain_report(context: Context, pod: dict[str, Any]) -> None:
    """A relay pod whose preStop drain left mail behind: say so in an Event (see drainreport).
    Relay pods come from the child index's pod watch (our label, server-side, nothing kept),
    not from kopf, which would watch every pod and keep each one's event body until a handler
    thread was free, behind the relays' passes."""
    try:
        drainreport.report(context.api, pod, context.leadership.identity)
    except ApiError as exc:
        log.warning("drain report of pod %s failed: %s", pod.get("metadata", {}).get("name"), exc)


async def _health(port: int, leadership: Leadership) -> aiohttp.web.AppRunner:
    """/healthz for the kubelet, answered by leader and standby alike (a standby is healthy)."""

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"leader": leadership.active(), "identity": leadership.identity})

    app = aiohttp.web.Application()
    app.router.add_get("/healthz", healthz)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def _serve(context: Context, elector: LeaderElector, liveness_port: int) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # kopf installs its own once it runs
        loop.add_signal_handler(signum, stopping.set)
    runner = await _health(liveness_port, context.leadership) if liveness_port else None

    async def operate(stop: asyncio.Event) -> None:
        await kopf.operator(
            clusterwide=not context.namespaces,
            namespaces=list(context.namespaces),
            standalone=True,
            identity=context.leadership.identity,  # type: ignore[arg-type]
            memo=kopf.Memo(context=context),
            stop_flag=stop,
        )

    try:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease") as executor:
            return await lead(elector, operate, stopping, executor)
    finally:
        if runner is not None:
            await runner.cleanup()


def run(*, namespaces: list[str], liveness_port: int, verbose: bool, metrics_port: int = 0) -> int:
    """`mailrelay-operator run`: the operator process."""
    try:
        settings = Settings.from_environment()
    except SettingsError as exc:
        print(f"mailrelay-operator run: {exc}", file=sys.stderr)
        return 2
    try:
        api = OperatorApi.from_environment()
    except kubernetes.config.ConfigException as exc:
        print(
            f"mailrelay-operator run: no cluster to talk to ({exc}).\n"
            "Set KUBECONFIG or run in a pod; to try a relay without a cluster: mailrelay-operator local -f FILE",
            file=sys.stderr,
        )
        return 1
    leadership = Leadership(holder_identity(settings.leader.pod_name), settings.leader.renew_deadline_seconds)
    api.write_guard = leadership.check
    # The Lease has its own connection pool, so renewals never queue behind reconcile passes.
    elector = LeaderElector(
        Api(kubernetes.client.ApiClient(), field_manager=names.FIELD_MANAGER), settings.leader, leadership
    )
    context = Context(
        api=api,
        settings=settings,
        leadership=leadership,
        namespaces=tuple(namespaces),
        release=elector.release,
        probe=RelayProbe(api) if settings.delivery_probe else None,
    )
    metrics.follow_leadership(leadership)
    if metrics_port:  # leader and standby alike, so a standby shows up with leader 0
        metrics.serve(metrics_port)
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        log_refkey="object",
    )
    return asyncio.run(_serve(context, elector, liveness_port))
