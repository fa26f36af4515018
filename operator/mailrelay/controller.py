"""The kopf shell: which events start a reconcile pass, and how the operator process is configured.

Triggers: the relay's create/update/resume (with kopf's retries), any event of a child we own (so a
deleted or edited child is restored within seconds and Deployment readiness reaches the status at
once), and a periodic resync of every relay that catches what no event announces (a Secret rotated
or created, a foreign Service removed). The resync is one operator-wide loop rather than a kopf timer
per relay, because kopf puts a finalizer on objects with timers. Every trigger runs the same
`reconcile` on a freshly read relay; no `on.delete` and no finalizer: children carry a controller
owner reference and the garbage collector removes them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import secrets
import socket
import sys
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import kubernetes

from mailrelay import metrics
from mailrelay.kube import Api, ApiError
from mailrelay.reconcile import DeliveryProbe, Outcome, reconcile
from mailrelay.relayprobe import RelayProbe
from mailrelay.render import MANAGED_BY
from mailrelay.spec import GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("mailrelay")

ANNOTATION_PREFIX = GROUP
RESYNC_SECONDS = float(os.environ.get("MAILRELAY_RESYNC_SECONDS", "60"))
RETRY_SECONDS = float(os.environ.get("MAILRELAY_RETRY_SECONDS", "10"))
# The resync asks each relay's metrics sidecars how delivery goes (status.queue, Delivering).
DELIVERY_PROBE = os.environ.get("MAILRELAY_DELIVERY_PROBE", "true").lower() not in ("false", "0", "no")
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
CHILD_RESOURCES = (("", "v1", "configmaps"), ("apps", "v1", "deployments"), ("", "v1", "services"),
                   ("networking.k8s.io", "v1", "networkpolicies"))

_api: Api | None = None
_namespaces: list[str] = []
_peering: dict[str, Any] = {"name": None, "priority": 0, "paused": False}
# Our identity in kopf's peering object, so the resync loop can tell whether this replica is active.
# (The pod name, so `kubectl get clusterkopfpeerings -o yaml` says which pod is which.)
IDENTITY = f"{socket.gethostname()}/{datetime.now(UTC):%Y%m%d%H%M%S}/{secrets.token_hex(3)}"
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def api() -> Api:
    global _api
    if _api is None:
        _api = Api.from_environment()
    return _api


def _lock(uid: str) -> threading.Lock:
    with _locks_guard:
        return _locks[uid]


def run_pass(body: dict[str, Any], trigger: str, probe: DeliveryProbe | None = None) -> Outcome:
    """Reconcile one relay, one pass at a time per relay, and post what a user should know."""
    with _lock(body["metadata"]["uid"]), metrics.timed_pass(trigger):
        outcome = reconcile(api(), body, probe=probe)
    for kind, reason, message in outcome.events:
        # Posted directly rather than with kopf.event(): the resync loop runs outside kopf's handler
        # context, where kopf's event queue is not reachable.
        api().post_event(body, kind, reason, message, IDENTITY)
    if (outcome.children and outcome.children.writes) or outcome.status_written:
        log.info("reconciled %s/%s (%s): %s; %s", body["metadata"]["namespace"], body["metadata"]["name"],
                 trigger, outcome.assessment.reason,
                 ", ".join(f"{c.action} {c.kind}/{c.name}" for c in outcome.children.children)
                 if outcome.children else "no children")
    return outcome


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"  # unused: no handler needs one
    settings.posting.level = logging.CRITICAL  # only the events we post on purpose, no log echoes
    settings.execution.max_workers = int(os.environ.get("MAILRELAY_WORKERS", "16"))
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    settings.watching.server_timeout = int(os.environ.get("MAILRELAY_WATCH_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    # Serving named namespaces needs no list of all namespaces (nor CRD watching): the namespaced
    # manifests grant neither, and a refused scan would only retry, warn and fall back to the names.
    settings.scanning.disabled = bool(_namespaces)
    api()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_relay(body: kopf.Body, reason: str, **_: Any) -> None:
    """API errors are retried by kopf with a delay. A stalled relay (a missing Secret, a foreign
    Service) is not: kopf would record every retry in the relay's annotations, a write each time;
    the resync loop comes back to it instead, writing nothing until something changed."""
    try:
        run_pass(copy.deepcopy(dict(body)), str(reason))
    except ApiError as exc:
        metrics.RETRIES.inc()
        raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from exc


def blocking_peer(namespace: str | None) -> str | None:
    """Another live operator that kopf's peering makes this replica give way to, if any.

    kopf pauses its own watches in that case; the resync loop is ours, so it asks the same question
    of the same peering object: a live peer with a higher (or, as kopf treats it, equal) priority.
    """
    name = _peering["name"]
    if name is None:
        return None
    peering = api().get_peering(name, namespace)
    if peering is None:
        return f"the peering object {name} (kopf waits for it too)"
    now = datetime.now(UTC)
    for identity, peer in (peering.get("status") or {}).items():
        if identity == IDENTITY or not isinstance(peer, dict):
            continue
        try:
            alive = datetime.fromisoformat(peer["lastseen"]) + timedelta(seconds=peer["lifetime"]) > now
        except (KeyError, TypeError, ValueError):
            continue
        if alive and peer.get("priority", 0) >= _peering["priority"]:
            return f"{identity} (priority {peer.get('priority', 0)})"
    return None


def _resync_targets() -> list[dict[str, Any]]:
    """The relays to resync: all of them, minus the scopes where another replica is active."""
    scopes: list[str | None] = list(_namespaces) or [None]
    blocked = {ns: peer for ns in scopes if (peer := blocking_peer(ns)) is not None}
    if blocked and not _peering["paused"]:
        log.info("resync paused: %s is active", next(iter(blocked.values())))
    elif not blocked and _peering["paused"]:
        log.info("resync resumed: this replica is active")
    _peering["paused"] = bool(blocked)
    metrics.LEADER.set(0 if blocked else 1)
    active = [ns for ns in scopes if ns not in blocked]
    if not active:
        return []
    return api().list_relays([ns for ns in active if ns is not None])


def resync_all() -> int:
    """Reconcile every watched relay once, unless another replica is active; returns how many."""
    count = 0
    probe = RelayProbe(api()) if DELIVERY_PROBE else None
    statuses: list[dict[str, Any] | None] = []
    for body in _resync_targets():
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        count += 1
        statuses.append(body.get("status"))
        try:
            statuses[-1] = run_pass(body, "resync", probe).status
        except ApiError as exc:
            log.warning("resync of %s/%s failed: %s", namespace, name, exc)
        except Exception:  # one broken relay must not stop the others' resync
            log.exception("resync of %s/%s failed", namespace, name)
    metrics.count_relays(statuses)
    return count


async def _resync_loop() -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            await loop.run_in_executor(None, resync_all)
        except ApiError as exc:
            log.warning("resync could not list relays: %s", exc)
        except Exception:  # the loop must outlive any one bad pass
            log.exception("resync failed")


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo["resync"] = asyncio.create_task(_resync_loop())


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


def _owner(body: kopf.Body) -> dict[str, Any] | None:
    refs = body.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller") and r.get("kind") == KIND
                 and r.get("apiVersion", "").startswith(f"{GROUP}/")), None)


def on_child(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    owner = _owner(body)
    if owner is None or namespace is None:
        return
    try:
        relay = api().get("MailRelay", namespace, owner["name"])
        if relay is not None and relay["metadata"].get("uid") == owner.get("uid"):
            run_pass(relay, f"{body.get('kind', 'child')} event")
    except ApiError as exc:
        log.warning("reconcile of %s/%s after a child event failed: %s", namespace, owner["name"], exc)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS, id=f"child-{_plural}")(on_child)


def run(*, namespaces: list[str], liveness_port: int, peering: str | None, standby: bool,
        verbose: bool, metrics_port: int = 0) -> int:
    """`mailrelay-operator run`: the operator process."""
    try:
        api()
    except kubernetes.config.ConfigException as exc:
        print(f"mailrelay-operator run: no cluster to talk to ({exc}).\n"
              "Set KUBECONFIG or run in a pod; to try a relay without a cluster: mailrelay-operator local -f FILE",
              file=sys.stderr)
        return 1
    _namespaces[:] = namespaces
    if metrics_port:
        metrics.serve(metrics_port)
    _peering.update(name=peering, priority=0 if standby else 100)
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if os.environ.get(
        "MAILRELAY_LOG_FORMAT", "json") == "json" else kopf.LogFormat.PLAIN, log_refkey="object")
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    asyncio.run(kopf.operator(
        clusterwide=not namespaces, namespaces=namespaces, standalone=peering is None, peering_name=peering,
        priority=_peering["priority"], identity=IDENTITY, liveness_endpoint=liveness))  # type: ignore[arg-type]
    return 0
