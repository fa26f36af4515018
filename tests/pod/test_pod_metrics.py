"""The relay pod's metrics sidecar, as rendered: both containers under runc, the operator's probe reading them.

The pod is the rendered Deployment's (tests/support/podrunner/ runs every container of it with its own
securityContext, mounts and probes). The sidecar is Debian's prometheus-postfix-exporter from the relay
image, following the log file Postfix writes on the shared volume and the queue through showq; the
relay container copies that log to its own stdout, which is what `kubectl logs` shows.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.controller import delivery
from mailrelay.render import relay, sidecar

from support.one_pass import scrape_once
from support.podrunner import Pod, PodNetwork, wait_until
from support.relay_pod import CLIENT, relay_spec, rendered_pod, send
from support.samples import relay_object
from support.smtp_sink import Sink, free_port
from support.wait import present


@pytest.fixture
def network(images: dict[str, str]) -> Iterator[PodNetwork]:
    made = PodNetwork().create()
    made.add_host_address(CLIENT)
    yield made
    made.delete()


def _probe(pod: Pod) -> Any:
    """The operator's delivery scrape, given this pod as its ReplicaSet controls it and its log as pods/log
    serves it."""
    return lambda relay: scrape_once(
        relay,
        [(pod.meta["name"], pod.network.pod_ip, pod.ready)],
        port=sidecar.PORT,
        read_log=lambda namespace, name: pod.log(),
    )


def test_the_sidecar_reports_a_refused_login_and_the_probe_names_it(network: PodNetwork) -> None:
    sink = Sink(host=network.gateway, port=free_port(network.gateway), credentials=("relay-user", "right")).start()
    spec = relay_spec(network, sink, authSecretRef={"name": "smarthost"})
    pod = rendered_pod(spec, network, secrets={"smarthost": {"username": "relay-user", "password": "wrong"}})
    try:
        pod.start().wait_ready(timeout=120)
        assert [c.name for c in pod.containers] == [relay.CONTAINER, sidecar.CONTAINER]
        assert pod.meta["annotations"]["kubectl.kubernetes.io/default-container"] == relay.CONTAINER
        for _ in range(2):
            send(pod, "root@pod")
        the_relay = relay_object(spec, name="relay")
        health = wait_until(
            lambda: (h := _probe(pod)(the_relay)) and h.queue.get("deferred") == 2 and h,
            90,
            "two deferred messages in the sidecar's metrics",
        )
        assert health.status == "False" and health.reason == cond.AUTH_FAILED, health
        assert health.message.startswith("2 messages deferred") and "wrong" not in health.message
        assert not sink.received and sink.auth_attempts
        # `kubectl logs` (the default container) still shows Postfix's own log, copied from the file.
        assert "status=deferred" in pod.log() and "postfix/smtpd" in pod.log()
        [port] = [p["containerPort"] for p in pod.named(sidecar.CONTAINER).spec["ports"]]
        with urllib.request.urlopen(f"http://{pod.network.pod_ip}:{port}{sidecar.PATH}", timeout=10) as answer:
            text = answer.read().decode()
        sample = present(delivery.parse(text))
        assert sample.deferred_attempts >= 2 and sample.queues["deferred"] == 2, text
        assert any(line.startswith("postfix_up{") and line.endswith(" 1") for line in text.splitlines())
        assert pod.restarts == 0, [pod.log(c.name)[-2000:] for c in pod.containers]
    finally:
        pod.stop()
        sink.stop()


def test_the_sidecar_keeps_only_its_one_capability_and_a_read_only_view(network: PodNetwork) -> None:
    sink = Sink(host=network.gateway, port=free_port(network.gateway)).start()
    pod = rendered_pod(relay_spec(network, sink), network)
    try:
        pod.start().wait_ready(timeout=120)
        metrics = pod.named(sidecar.CONTAINER)
        out = pod.exec(
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; touch /x 2>&1; "
            f"touch {sidecar.LOG_DIR}/x 2>&1; touch /var/spool/postfix/x 2>&1",
            container=metrics.name,
        ).stdout
        assert metrics.spec["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]}
        assert "CapEff:\t0000000000000002" in out and "NoNewPrivs:\t1" in out  # bit 1: DAC_OVERRIDE
        assert out.count("Read-only file system") == 3, out
        send(pod, "root@pod")
        sink.wait_for(1)
        assert "status=sent" in wait_until(lambda: "status=sent" in pod.log() and pod.log(), 30, "the sent line")
        assert pod.restarts == 0 and pod.ready
    finally:
        pod.stop()
        sink.stop()
