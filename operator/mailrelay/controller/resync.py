"""The periodic resync: every served relay reconciled again, for what no watch event announces.

A Secret rotated or created, a foreign Service removed: nothing the operator watches changes, so
every `resync_seconds` the listed relays run the same pass as any event. It also retries what a
child event or an earlier resync could not finish. One operator-wide loop rather than a kopf timer
per relay, because kopf puts a finalizer on objects with timers. It runs inside the kopf operator
(started by a startup handler), so it exists only while this replica holds the leader Lease.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailrelay.api.names import API_VERSION, KIND
from mailrelay.controller import metrics
from mailrelay.controller.context import Context
from mailrelay.kube.client import ApiError, NotLeader

log = logging.getLogger("mailrelay")


RESYNC_CONCURRENCY = 4  # passes at a time: each waits mostly on the API server


def resync_all(context: Context) -> int:
    """Reconcile every served relay once; returns how many were listed.

    Each relay is read again just before its pass: the list can be seconds old by the time a relay's
    turn comes, and a pass from a listed body whose relay was deleted meanwhile would write its children
    again (the garbage collector removes them, but only after a user may have met them). A few passes
    run at a time: one after the other, a thousand relays took minutes.
    """
    relays = context.api.list_relays(context.namespaces)
    with ThreadPoolExecutor(RESYNC_CONCURRENCY, thread_name_prefix="resync") as pool:
        # re-raises NotLeader from any pass; the statuses feed the relays-by-condition gauge
        statuses = list(pool.map(lambda listed: _resync_one(context, listed), relays))
    metrics.count_relays(statuses)
    metrics.track_tokens(zip(relays, statuses, strict=True))
    return len(relays)


def _resync_one(context: Context, listed: dict[str, Any]) -> dict[str, Any] | None:
    """The relay's status after its pass (as listed when the pass failed; None when it is gone)."""
    namespace, name = listed["metadata"]["namespace"], listed["metadata"]["name"]
    try:
        body = context.api.get(KIND, namespace, name)
        if body is None or body["metadata"]["uid"] != listed["metadata"]["uid"]:
            return None  # deleted (or deleted and created again, which the watch handles) since the list
        return context.run_pass({"apiVersion": API_VERSION, "kind": KIND, **body}, "resync").status
    except NotLeader:
        raise
    except ApiError as exc:
        log.warning("resync of %s/%s failed: %s", namespace, name, exc)
    except Exception:  # one broken relay must not stop the others' resync
        log.exception("resync of %s/%s failed", namespace, name)
    status: dict[str, Any] | None = listed.get("status")
    return status


async def resync_loop(context: Context) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(context.settings.resync_seconds)
        try:
            await loop.run_in_executor(None, resync_all, context)
        except NotLeader as exc:
            log.warning("resync skipped: %s", exc)
        except ApiError as exc:
            log.warning("resync could not list relays: %s", exc)
        except Exception:  # the loop must outlive any one bad pass
            log.exception("resync failed")
