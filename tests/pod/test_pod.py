"""The relay image, built from image/postfix/Dockerfile, run under runc exactly as `render` describes it.

Every pod here comes from the rendered Deployment and ConfigMap (tests/support/podrunner/ applies the pod
spec the way the kubelet and containerd do: 0777 emptyDirs, tmpfs, ConfigMap and Secret layouts,
capabilities, read-only root, no-new-privileges, seccomp, probes, preStop). The pod has its own
network namespace; clients and the smarthost sink use addresses on the host end of its veth.
"""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from support.podrunner import Pod, PodNetwork, wait_until
from support.relay_pod import CLIENT, FQDN, OUTSIDER, relay_spec, rendered_pod, send
from support.smtp_sink import Sink, free_port, self_signed_server_context


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return self_signed_server_context(tmp_path_factory.mktemp("tls"))


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


def test_relay_becomes_ready_by_its_own_probe(tls_relay: tuple[Pod, Sink]) -> None:
    pod, _ = tls_relay
    assert pod.ready and pod.status() == "running"
    assert any(kind == "readinessProbe" and status == 0 for kind, status, _ in pod.probe_log)
    start_up = pod.log().partition("daemon started")[0]
    assert "starting Postfix" in start_up and "warning" not in start_up


def test_the_pod_gets_what_its_spec_says(tls_relay: tuple[Pod, Sink]) -> None:
    """Read-only root, 0777 emptyDirs made Postfix-safe by the entrypoint, the Secret's 0400 mode."""
    pod, _ = tls_relay
    check = pod.exec(
        "sh",
        "-c",
        "touch /probe-file 2>&1; stat -c '%a %U %n' /var/spool/postfix /var/lib/postfix "
        "/run/mailrelay /tmp; stat -L -c '%a %n' /etc/mailrelay/secret/password "
        "/etc/mailrelay/config/main.cf; grep -E '^(CapEff|NoNewPrivs|Seccomp):' "
        "/proc/self/status",
    )
    out = check.stdout
    assert "Read-only file system" in out
    assert "755 root /var/spool/postfix" in out and "755 postfix /var/lib/postfix" in out
    assert "777 root /run/mailrelay" in out and "777 root /tmp" in out  # the volumes as the kubelet made them
    assert "400 /etc/mailrelay/secret/password" in out and "644 /etc/mailrelay/config/main.cf" in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    bits = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10}
    added = pod.container["securityContext"]["capabilities"]["add"]
    assert f"CapEff:\t{sum(1 << bits[c] for c in added):016x}" in out  # exactly the rendered set


def test_mail_from_an_allowed_client_is_relayed_with_senders_rewritten(tls_relay: tuple[Pod, Sink]) -> None:
    pod, sink = tls_relay
    before = len(sink.received)
    send(pod, "app@pod-7f9c.default.svc.cluster.local", header='"App" <app@pod-7f9c.default.svc.cluster.local>')
    got = sink.wait_for(before + 1)[-1]
    assert got.mail_from == f"app@{FQDN}"
    assert got.header("From") == f'"App" <app@{FQDN}>'
    assert got.auth == ("relay-user", "s3cret pass")
    assert f"TLS connection established to {pod.network.gateway}" in pod.log()
    assert "s3cret" not in pod.log()


def test_a_client_outside_allowed_networks_is_refused(tls_relay: tuple[Pod, Sink]) -> None:
    pod, sink = tls_relay
    before = len(sink.received)
    with pytest.raises(smtplib.SMTPConnectError) as refused:  # refused in the greeting, before any command
        send(pod, "spam@outside.example", source=OUTSIDER)
    assert refused.value.smtp_code == 554 and b"Client host rejected: Access denied" in refused.value.smtp_error
    time.sleep(1)
    assert len(sink.received) == before


def test_mail_inside_the_container_is_delivered(tls_relay: tuple[Pod, Sink]) -> None:
    """`mail` drafts in /tmp and hands over to setgid postdrop; the exec is root with DAC_OVERRIDE."""
    pod, sink = tls_relay
    before = len(sink.received)
    result = pod.exec("sh", "-c", "echo hi from exec | mail -s exec-test you@example.org")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    got = sink.wait_for(before + 1)[-1]
    assert got.rcpt_tos == ["you@example.org"] and got.mail_from == f"root@{FQDN}"
    assert got.header("Subject") == "exec-test" and "hi from exec" in got.data.decode()


def _postfix_host_pids(pod: Pod) -> list[int]:
    """The container's master (its PID 1) and the children it forked, as host pids."""
    import json

    from support.podrunner.pod import runc

    master = json.loads(runc("state", pod.id).stdout)["pid"]
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def test_liveness_fails_while_postfix_is_stopped_and_passes_otherwise(tls_relay: tuple[Pod, Sink]) -> None:
    pod, _ = tls_relay
    live = pod.container["livenessProbe"]
    probe = live["exec"]["command"]
    assert pod.exec(*probe, timeout=live["timeoutSeconds"]).returncode == 0
    pids = _postfix_host_pids(pod)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        hung = pod.exec(*probe, timeout=live["timeoutSeconds"])
        assert hung.returncode != 0 and "did not answer" in hung.stderr
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert pod.exec(*probe, timeout=live["timeoutSeconds"]).returncode == 0


# --- pods of their own ---------------------------------------------------------------------------
def test_a_hung_relay_is_restarted_by_its_liveness_probe(
    pods: list[Pod], new_network: Callable[[], PodNetwork]
) -> None:
    """failureThreshold failures in a row, periodSeconds apart: the container is replaced, mail kept."""
    network = new_network()
    sink = Sink(host=network.gateway, port=free_port(network.gateway))  # down for now
    pod = rendered_pod(relay_spec(network, sink), network)
    pods.append(pod)
    pod.start().wait_ready()
    send(pod, "root@pod")
    wait_until(lambda: "Connection refused" in pod.log(), 30, "a failed delivery attempt")
    first = pod.id
    for pid in _postfix_host_pids(pod):
        os.kill(pid, signal.SIGSTOP)
    live = pod.container["livenessProbe"]
    grace = pod.spec["terminationGracePeriodSeconds"]  # the hung container gets its preStop and grace period
    wait_until(
        lambda: pod.restarts == 1,
        live["periodSeconds"] * (live["failureThreshold"] + 1) + grace + 30,
        "the liveness restart",
    )
    assert "liveness probe failed 3 times" in pod.log()
    assert pod.id != first
    pod.wait_ready()
    sink.start()
    try:
        pod.exec("postqueue", "-f")
        assert [r.mail_from for r in sink.wait_for(1)] == [f"root@{FQDN}"]  # the queue volume outlived the restart
    finally:
        sink.stop()


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


def test_a_config_change_starts_cleanly_in_a_new_container(
    pods: list[Pod], new_network: Callable[[], PodNetwork]
) -> None:
    """The rollout: a new ConfigMap and config hash, a new pod ready first, then the old one drained."""
    old_network, new_network_ = new_network(), new_network()
    sinks = [Sink(host=n.gateway, port=free_port(n.gateway)).start() for n in (old_network, new_network_)]
    try:
        old = rendered_pod(relay_spec(old_network, sinks[0]), old_network)
        new = rendered_pod(relay_spec(new_network_, sinks[1], fqdn="relay.example.net"), new_network_)
        pods.extend([old, new])
        old.start().wait_ready()
        assert old.meta["annotations"] != new.meta["annotations"]  # the config hash rolls the pods
        new.start().wait_ready()
        send(new, "root@6ba2d5764050")
        assert sinks[1].wait_for(1)[0].mail_from == "root@relay.example.net"
        old.stop()
        assert old.pre_stop_result is not None and "queue empty" in old.pre_stop_result.stdout
        start_up = new.log().partition("daemon started")[0]
        assert "starting Postfix" in start_up and "warning" not in start_up
    finally:
        for sink in sinks:
            sink.stop()
