"""`mailrelay-operator run`: settings, the API client, leader election, health and metrics ports, kopf.

Every replica runs this. It first campaigns for the leader Lease (kube.leader); only the holder
starts kopf, and with it the caches and the workers (controller.handlers), so watches, passes and
the resync all obey the one decision. Leader and standby alike answer /healthz and /metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys

import aiohttp.web
import kopf

from mailrelay.api import names
from mailrelay.controller import handlers, metrics
from mailrelay.controller.caches import Caches
from mailrelay.controller.client import OperatorApi
from mailrelay.controller.context import Context
from mailrelay.controller.rollouts import RolloutGate
from mailrelay.controller.settings import Settings, SettingsError
from mailrelay.kube.client import Api
from mailrelay.kube.config import ConfigError
from mailrelay.kube.leader import LeaderElector, Leadership, holder_identity, lead

assert handlers  # registers the kopf handlers


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


async def _serve(context: Context, caches: Caches, elector: LeaderElector, liveness_port: int) -> int:
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
            memo=kopf.Memo(context=context, caches=caches),
            stop_flag=stop,
        )

    try:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease") as executor:
            return await lead(elector, operate, stopping, executor)
    finally:
        if runner is not None:
            await runner.cleanup()


def run(*, namespaces: list[str], liveness_port: int, verbose: bool, metrics_port: int = 0) -> int:
    try:
        settings = Settings.from_environment()
    except SettingsError as exc:
        print(f"mailrelay-operator run: {exc}", file=sys.stderr)
        return 2
    try:
        api = OperatorApi.from_environment()
        # The Lease has its own connection pool, so renewals never queue behind reconcile passes.
        lease_api = Api.from_environment(field_manager=names.FIELD_MANAGER)
    except ConfigError as exc:
        print(
            f"mailrelay-operator run: no cluster to talk to ({exc}).\n"
            "Set KUBECONFIG or run in a pod; to try a relay without a cluster: mailrelay-operator local -f FILE",
            file=sys.stderr,
        )
        return 1
    leadership = Leadership(holder_identity(settings.leader.pod_name), settings.leader.renew_deadline_seconds)
    api.write_guard = leadership.check
    elector = LeaderElector(lease_api, settings.leader, leadership)
    caches = Caches(api, tuple(namespaces))
    context = Context(
        caches,
        settings,
        leadership,
        namespaces=tuple(namespaces),
        release=elector.release,
        rollouts=RolloutGate(settings.max_rolling_relays),
    )
    metrics.follow_leadership(leadership)
    if metrics_port:  # leader and standby alike, so a standby shows up with leader 0
        metrics.serve(metrics_port)
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        log_refkey="object",
    )
    return asyncio.run(_serve(context, caches, elector, liveness_port))
