"""The relay image, built from image/postfix/Dockerfile, run under runc exactly as `render` describes it.

Every pod here comes from the rendered Deployment and ConfigMap (tests/support/podrunner/ applies the pod
spec the way the kubelet and containerd do: 0777 emptyDirs, tmpfs, ConfigMap and Secret layouts,
capabilities, read-only root, no-new-privileges, seccomp, probes, preStop). The pod has its own
network namespace; clients and the smarthost sink use addresses on the host end of its veth.

What the real node now runs with the kubelet (tests/node: the pod's volumes, modes, capabilities and
probes, mail relayed and rewritten, `mail` in the container, the liveness restart with the queue kept,
the rollout) left here; these stay because they need what the node's pods do not give a test: a client
address outside allowedNetworks on the pod's own network, and a smarthost the test starts at will for
the preStop drain to deliver to before the container stops.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from support.loopback_ca import LoopbackCA
from support.podrunner import Pod, PodNetwork, wait_until
from support.relay_pod import CLIENT, OUTSIDER, relay_spec, rendered_pod, send
from support.smtp_sink import Sink, free_port


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return LoopbackCA(tmp_path_factory.mktemp("tls")).server_context()


@pytest.fixture
def pods(images: dict[str, str]) -> Iterator[list[Pod]]:
    started: list[Pod] = []
    yield started
    for pod in started:
        pod.stop()


@pytest.fixture
def new_network() -> Iterator[Callable[[], PodNetwork]]:
    made: list[PodNetwork] = []

    def make() -> PodNetwork:
        network = PodNetwork().create()
        network.add_host_address(CLIENT)
        network.add_host_address(OUTSIDER)
        made.append(network)
        return network

    yield make
    for network in made:
        network.delete()


def queued(pod: Pod) -> int:
    result = pod.exec(
        "sh",
        "-c",
        "find /var/spool/postfix/maildrop /var/spool/postfix/incoming "
        "/var/spool/postfix/active /var/spool/postfix/deferred -type f | wc -l",
    )
    return int(result.stdout)


# --- one relay pod with a smarthost that wants STARTTLS and a login -------------------------------
@pytest.fixture(scope="module")
def tls_relay(images: dict[str, str], server_tls: ssl.SSLContext) -> Iterator[tuple[Pod, Sink]]:
    network = PodNetwork().create()
    network.add_host_address(CLIENT)
    network.add_host_address(OUTSIDER)
    sink = Sink(
        host=network.gateway,
        port=free_port(network.gateway),
        credentials=("relay-user", "s3cret pass"),
        tls_context=server_tls,
    ).start()
    spec = relay_spec(network, sink, tls="Encrypt", authSecretRef={"name": "smarthost"})
    pod = rendered_pod(spec, network, secrets={"smarthost": {"username": "relay-user", "password": "s3cret pass"}})
    try:
        pod.start().wait_ready()
        yield pod, sink
    finally:
        pod.stop()
        sink.stop()


def test_a_client_outside_allowed_networks_is_refused(tls_relay: tuple[Pod, Sink]) -> None:
    pod, sink = tls_relay
    before = len(sink.received)
    with pytest.raises(smtplib.SMTPConnectError) as refused:  # refused in the greeting, before any command
        send(pod, "spam@outside.example", source=OUTSIDER)
    assert refused.value.smtp_code == 554 and b"Client host rejected: Access denied" in refused.value.smtp_error
    time.sleep(1)
    assert len(sink.received) == before


# --- pods of their own ---------------------------------------------------------------------------
def test_prestop_drain_delivers_the_queue_before_the_container_stops(
    pods: list[Pod], new_network: Callable[[], PodNetwork]
) -> None:
    network = new_network()
    sink = Sink(host=network.gateway, port=free_port(network.gateway))  # the smarthost is down at first
    pod = rendered_pod(relay_spec(network, sink), network)
    pod.start().wait_ready()
    try:
        for _ in range(3):
            send(pod, "root@pod")
        wait_until(lambda: "Connection refused" in pod.log(), 30, "a failed delivery attempt")
        assert queued(pod) == 3
        sink.start()
        took = pod.stop()
        assert len(sink.received) == 3  # delivered by the preStop hook, before SIGTERM
        assert pod.pre_stop_result is not None and "queue empty" in pod.pre_stop_result.stdout
        assert took < pod.spec["terminationGracePeriodSeconds"]
        assert pod.status() == "gone"
    finally:
        sink.stop()
