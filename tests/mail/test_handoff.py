"""No accepted message is lost when a relay goes away, on real Postfix through the image's own scripts.

Each relay is a private Postfix started by the entrypoint; drain.sh is the pod's preStop hook, run
against it with the rendered phase lengths shortened by environment variables. What the host
harness cannot have is a Service and kube-proxy: the tests stand in for them by naming the peer
that the Service would route to as the hand-off target (a rollout's new pod, the replica that stays
after a scale-down), and by switching the clients' list of endpoints themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import threading
import time
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from support.mail import FQDN, POD, message, relay_spec
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink, free_port

CLIENT_SENDER = "app@pod-7f9c.default.svc.cluster.local"


def drain(
    instance: HarnessPostfix, target: HarnessPostfix | str | None, env: dict[str, str] | None = None, **phases: int
) -> str:
    """Run the preStop hook; `target` is where the Service would send the hand-off."""
    extra = env or {}
    env = {
        "MAILRELAY_ENDPOINT_WAIT_SECONDS": "0",
        "MAILRELAY_SESSION_WAIT_SECONDS": "5",
        "MAILRELAY_DRAIN_SECONDS": "1",
        "MAILRELAY_HANDOFF_SECONDS": "60",
        "MAILRELAY_DRAIN_FLUSH_EVERY": "1",
        "MAILRELAY_HANDOFF_TARGET": (
            f"{target.listen}:{target.port}" if isinstance(target, HarnessPostfix) else target or ""
        ),
    }
    env.update({f"MAILRELAY_{name.upper()}_SECONDS": str(value) for name, value in phases.items()}, **extra)
    result = instance.run_script("drain.sh", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def send_many(instance: HarnessPostfix, count: int, per_connection: int = 50) -> list[str]:
    """Send `count` messages in a few SMTP sessions; the Message-IDs of those the relay accepted."""
    ids: list[str] = []
    while len(ids) < count:
        with smtplib.SMTP(instance.listen, instance.port, source_address=(POD, 0), timeout=30) as smtp:
            for _ in range(min(per_connection, count - len(ids))):
                msg = message(CLIENT_SENDER)
                smtp.send_message(msg, from_addr=CLIENT_SENDER, to_addrs=["ops@example.org"])
                ids.append(msg["Message-ID"])
    return ids


def wait_deferred(instance: HarnessPostfix, count: int, timeout: float = 60) -> None:
    """Wait until `count` messages sit in the deferred queue: one still being tried when the flush
    comes would be deferred after it, for Postfix's 300 s minimal backoff."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deferred = sum(1 for path in (instance.queue_dir / "deferred").rglob("*") if path.is_file())
        if deferred == count and instance.queued() == count:
            return
        time.sleep(0.2)
    raise AssertionError(f"expected {count} deferred messages, the queue has {instance.queued()}")


def assert_exactly_once(sink: Sink, ids: list[str], timeout: float = 60) -> None:
    sink.wait_for(len(ids), timeout=timeout)
    time.sleep(2)  # a duplicate would arrive by now
    counts = Counter(r.header("Message-ID") for r in sink.received)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} missing, {len(set(counts) - set(ids))} unknown"
    assert [i for i, n in counts.items() if n > 1] == []
    assert {r.mail_from for r in sink.received} == {f"app@{FQDN}"}
    assert {r.header("From") for r in sink.received} == {f"app@{FQDN}"}
    assert all(r.rcpt_tos == ["ops@example.org"] for r in sink.received)


@pytest.fixture
def down_sink(sinks: list[Sink]) -> Sink:
    """The smarthost, not started: the relays queue everything."""
    sink = Sink()
    sinks.append(sink)
    return sink


def test_roll_and_scale_down_hand_500_messages_on_each_arriving_once(start_postfix: Any, down_sink: Sink) -> None:
    """Two replicas hold 500 queued messages; a config change rolls both, then 2→1; nothing lost."""
    old, new = make_relay(relay_spec(down_sink)), make_relay(relay_spec(down_sink, messageSizeLimitBytes=20_000_000))
    a1, a2 = start_postfix(old), start_postfix(old)
    ids = send_many(a1, 250) + send_many(a2, 250)
    assert a1.queued() + a2.queued() == 500
    # Rollout, maxSurge 1: a new pod is ready, then an old one drains into the Service (the new pod).
    b1 = start_postfix(new)
    assert "250 message(s) handed to the other replicas" in drain(a1, b1)
    a1.stop()
    b2 = start_postfix(new)
    assert "250 message(s) handed to the other replicas" in drain(a2, b2)
    a2.stop()
    # Scale 2→1: the replica that goes hands its queue to the one that stays, found by name this time.
    assert "250 message(s) handed to the other replicas" in drain(b2, f"localhost:{b1.port}")
    assert a1.termination_log.read_text().endswith("nothing left\n")
    b2.stop()
    wait_deferred(b1, 500)
    assert "status=bounced" not in b1.log() + a1.log() + a2.log() + b2.log()
    down_sink.start()
    assert b1.postfix("flush").returncode == 0
    assert_exactly_once(down_sink, ids)
    assert b1.queued() == 0


def _kill_postfix(instance: HarnessPostfix) -> None:
    """SIGKILL the master and every process it started, as a node failure or OOM kill would."""
    master = int((instance.queue_dir / "pid" / "master.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    for pid in [master, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert instance.process is not None
    instance.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_sigkill_with_a_persistent_queue_the_next_relay_delivers_each_message_once(
    start_postfix: Any, down_sink: Sink
) -> None:
    relay = make_relay(relay_spec(down_sink, queue={"storage": {"size": "1Gi"}}))
    first = start_postfix(relay)
    ids = send_many(first, 200)
    assert first.queued() == 200
    _kill_postfix(first)
    assert first.postfix("status").returncode != 0
    # The next pod mounts the same volume: a new instance over the same queue directory.
    second = HarnessPostfix(relay, first.workdir, listen=first.listen, port=free_port())
    second.start()
    try:
        wait_deferred(second, 200)
        down_sink.start()
        assert second.postfix("flush").returncode == 0
        assert_exactly_once(down_sink, ids)
        assert second.queued() == 0
    finally:
        second.stop()


def test_without_a_peer_the_drain_says_how_many_are_left(start_postfix: Any, down_sink: Sink) -> None:
    """The last replica (scale to 0, relay deleted): nobody answers at the Service."""
    relay = make_relay(relay_spec(down_sink))
    instance = start_postfix(relay)
    send_many(instance, 3)
    out = drain(instance, f"127.0.0.1:{free_port()}", handoff=3)
    [line] = [ln for ln in out.splitlines() if "left in the queue" in ln]
    assert line.startswith("mailrelay-drain: 3 message(s) left in the queue (no other replica took them at 127.0.0.1:")
    assert line.endswith("within 3s); they are lost with this pod's emptyDir")
    assert instance.termination_log.read_text().strip() == line
    assert instance.queued() == 3
    persistent = start_postfix(make_relay(relay_spec(down_sink, queue={"storage": {"size": "1Gi"}})))
    send_many(persistent, 2)
    out = drain(persistent, f"127.0.0.1:{free_port()}", env={"MAILRELAY_QUEUE_PERSISTENT": "1"})
    assert "2 message(s) left in the queue (no other replica answers at 127.0.0.1:" in out
    assert "they stay on this pod's persistent volume and the next pod that mounts it delivers them" in out
    assert "handing them" not in out  # nobody there: no hand-off time spent


def test_a_hand_off_routed_back_to_the_draining_relay_is_not_lost_or_bounced(
    start_postfix: Any, down_sink: Sink
) -> None:
    """The Service may still pick the draining pod: its listener is closed by then, so the mail stays."""
    instance = start_postfix(make_relay(relay_spec(down_sink)))
    send_many(instance, 5)
    out = drain(instance, instance, handoff=3)
    assert "5 message(s) left in the queue (no other replica took them" in out
    assert instance.queued() == 5
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((instance.listen, instance.port), timeout=5).close()
    assert "status=bounced" not in instance.log()


class Clients:
    """Parallel SMTP clients sending through a modelled Service: each connection goes to one of the
    endpoints listed at that moment, round robin, as kube-proxy would spread them."""

    def __init__(self, endpoints: list[HarnessPostfix], count: int = 8):
        self.endpoints = list(endpoints)
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.other: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._turn = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _pick(self) -> HarnessPostfix:
        with self._lock:
            self._turn += 1
            return self.endpoints[self._turn % len(self.endpoints)]

    def _run(self) -> None:
        while not self._stop.is_set():
            target = self._pick()
            msg: EmailMessage = message(CLIENT_SENDER)
            try:
                with smtplib.SMTP(target.listen, target.port, source_address=(POD, 0), timeout=30) as smtp:
                    smtp.send_message(msg, from_addr=CLIENT_SENDER, to_addrs=["ops@example.org"])
            except ConnectionRefusedError:
                with self._lock:
                    self.refused.append(f"{target.port}")
                continue
            except (smtplib.SMTPException, OSError) as exc:
                with self._lock:
                    self.other.append(repr(exc))
                continue
            with self._lock:
                self.accepted.append(msg["Message-ID"])
            time.sleep(0.02)

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.mark.parametrize(
    ("wait", "refusals_expected"), [(4, False), (0, True)], ids=["with-the-prestop-wait", "control-without-it"]
)
def test_a_rollout_under_load_refuses_no_connection_and_loses_no_message(
    start_postfix: Any, down_sink: Sink, wait: int, refusals_expected: bool
) -> None:
    """Old relay A serves; new relay B becomes ready; A is deleted: its preStop starts at once, and
    the endpoint update reaches the clients 1.5 s later (kube-proxy lag). With the waits, clients
    that still pick A are served; without them (the control) they are refused or cut off, which
    shows the test can see a failure. Every accepted message reaches the smarthost once, by way of B's queue.

    Not shown here: how long a real cluster takes to move endpoints (the rendered 10 s wait is a
    margin over typical kube-proxy lag, not a guarantee), and connections that kube-proxy keeps
    pointing at the pod after the wait; a session still open when the listener closes is the one
    that can break."""
    relay = make_relay(relay_spec(down_sink))
    a = start_postfix(relay)
    clients = Clients([a]).start()
    time.sleep(1)
    b = start_postfix(relay)
    clients.endpoints = [a, b]  # B ready: added to the endpoints
    time.sleep(1)
    result: dict[str, str] = {}
    prestop = threading.Thread(target=lambda: result.update(out=drain(a, b, endpoint_wait=wait, session_wait=wait)))
    prestop.start()
    time.sleep(1.5)
    clients.endpoints = [b]  # the endpoint removal has propagated
    prestop.join(timeout=120)
    time.sleep(1)
    clients.stop()
    if refusals_expected:
        assert clients.refused or clients.other, "without the waits, clients that still pick A should fail"
        return
    assert clients.refused == [] and clients.other == []
    assert "nothing left" in result["out"]
    assert a.queued() == 0
    assert len(clients.accepted) > 50
    wait_deferred(b, len(clients.accepted))
    down_sink.start()
    assert b.postfix("flush").returncode == 0
    assert_exactly_once(down_sink, clients.accepted)


def test_a_peer_that_refuses_the_hand_off_does_not_turn_it_into_bounces(start_postfix: Any, down_sink: Sink) -> None:
    """A draining pod whose address is outside the peer's allowedNetworks gets 554 from the peer:
    the mail must stay queued (and be reported), never bounce back to the senders."""
    old = start_postfix(make_relay(relay_spec(down_sink)))
    peer = start_postfix(make_relay(relay_spec(down_sink)))
    send_many(old, 4)
    # The pod's address: 127.0.0.9 is outside allowedNetworks (127.0.0.4/30) and not loopback's /32.
    subprocess.run(["postconf", "-c", str(old.config_dir), "-e", "smtp_bind_address=127.0.0.9"], check=True)
    out = drain(old, peer, handoff=3)
    assert "4 message(s) left in the queue (no other replica took them" in out
    log = old.log()
    assert "Client host rejected" in log and "status=bounced" not in log
    assert old.queued() == 4 and peer.queued() == 0
