"""The user's journey on the real node, from shipped artifacts only: the operator installed with
`kubectl apply` of `kubectl kustomize manifests/cluster-wide` (its image pulled by its release name from the
local registry); the relay of examples/smarthost.yaml, with DKIM and a namespace admitted in spec.clients,
pointed at a sink pod that speaks STARTTLS and SASL; client pods sending with busybox `sendmail -S mail:25`
and msmtp; the mail at the sink with its envelope sender and From rewritten, over TLS with the relay's
login, DKIM-verified against the record the MailRelay reports; the relay's NetworkPolicy enforced; and as many
concurrent sessions as bench/README.md says its memory limit allows, under that limit as a real cgroup limit."""

from __future__ import annotations

import subprocess
import threading
from typing import TYPE_CHECKING, Any

import pytest

from support.journey import (
    LOGIN,
    Journey,
    container_cgroup,
    delivered,
    message,
    postfix_status,
    relay_pod,
    sendmail,
)
from support.nodekit import eventually, exec_in, sink_messages

if TYPE_CHECKING:
    from node import NodeCluster

pytestmark = pytest.mark.node


def test_a_relay_without_an_image_runs_the_release_image_on_the_node(node: NodeCluster, journey: Journey) -> None:
    relay_pods = node.get("pods", "-n", journey.namespace, "-l", "app.kubernetes.io/instance=relay")["items"]
    assert relay_pods and {c["image"] for p in relay_pods for c in p["spec"]["containers"]} == {
        "ghcr.io/mailrelay-dev/postfix:0.1.0"
    }


def test_busybox_sendmail_through_mail_25_arrives_rewritten_signed_over_tls_with_the_login(
    node: NodeCluster, journey: Journey
) -> None:
    sent = sendmail(node, journey.namespace, "busybox", sender="root@6ba2d5764050")
    assert sent.returncode == 0, sent.stderr
    mail = delivered(node, journey, "busybox")
    headers = {name.lower(): value for name, value in mail["headers"]}
    assert mail["mail_from"] == f"root@{journey.fqdn}"
    assert headers["from"] == f"root@{journey.fqdn}"
    assert mail["rcpt_tos"] == ["you@example.org"]
    assert (mail["tls"], mail["authenticated"], mail["login"], mail["port"]) == (True, True, LOGIN[0], 587)
    assert mail["dkim"] == "pass"
    relay_ips = {
        p["status"]["podIP"]
        for p in node.get("pods", "-n", journey.namespace)["items"]
        if p["metadata"]["name"].startswith("mailrelay-relay")
    }
    assert mail["peer"] in relay_ips


def test_msmtp_with_host_mail_arrives_rewritten(node: NodeCluster, journey: Journey) -> None:
    sent = exec_in(
        node,
        journey.namespace,
        "client",
        "msmtp",
        "--host=mail",
        "--port=25",
        "--from=root@6ba2d5764050",
        "you@example.org",
        input=message("msmtp"),
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    mail = delivered(node, journey, "msmtp")
    assert mail["mail_from"] == f"root@{journey.fqdn}" and mail["dkim"] == "pass"


def test_the_relays_network_policy_refuses_other_namespaces_and_admits_its_clients(
    node: NodeCluster, journey: Journey
) -> None:
    host = f"mail.{journey.namespace}.svc.cluster.local:25"
    refused = sendmail(node, journey.other, "other namespace", sender="root@other", host=host, timeout=20)
    assert refused.returncode != 0
    admitted = sendmail(node, journey.admitted, "admitted namespace", sender="root@admitted", host=host)
    assert admitted.returncode == 0, admitted.stderr
    assert delivered(node, journey, "admitted namespace")["mail_from"] == f"root@{journey.fqdn}"
    assert not [m for m in sink_messages(node, journey.namespace) if ["Subject", "other namespace"] in m["headers"]]


def test_the_relays_memory_limits_are_real_cgroup_limits(node: NodeCluster, journey: Journey) -> None:
    pod = relay_pod(node, journey)
    for container in pod["spec"]["containers"]:
        limit = exec_in(
            node,
            journey.namespace,
            pod["metadata"]["name"],
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            container=container["name"],
        ).stdout
        expected = container["resources"]["limits"]["memory"]
        assert expected.endswith("Mi") and int(limit) == int(expected[:-2]) * 1024 * 1024, (container["name"], limit)


def test_mail_sent_inside_the_relay_pod_with_kubectl_exec_arrives_rewritten(
    node: NodeCluster, journey: Journey
) -> None:
    pod = relay_pod(node, journey)["metadata"]["name"]
    sent = exec_in(
        node,
        journey.namespace,
        pod,
        "mail",
        "-s",
        "kubectl exec",
        "you@example.org",
        input="sent with mail inside the relay pod\n",
        check=False,
        container="postfix",
    )
    assert sent.returncode == 0, sent.stderr
    assert delivered(node, journey, "kubectl exec")["mail_from"] == f"root@{journey.fqdn}"


def test_the_operator_pod_runs_its_released_image_pulled_from_the_registry(node: NodeCluster, operator: str) -> None:
    pods = node.get("pods", "-n", operator)["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {
        "ghcr.io/mailrelay-dev/mailrelay-operator:0.1.0"
    }
    assert node.node
    listed = node.node.ctr("images", "list", "-q").stdout
    assert "ghcr.io/mailrelay-dev/mailrelay-operator:0.1.0" in listed


SESSIONS = 25  # bench/README.md: the relay's memory limit (256 MiB) "leaves room for about 25 concurrent sessions"


def test_the_relay_holds_the_concurrent_sessions_its_memory_limit_allows_without_an_oom_kill(
    node: NodeCluster, journey: Journey
) -> None:
    """SESSIONS clients hold their SMTP sessions open at once (each in the middle of its message), under the relay's
    real cgroup memory limit: every session is established together, every message arrives once, signed, and the
    kernel killed nothing in the container (its OOM counter, the container's restarts and last state)."""
    pod = relay_pod(node, journey)
    name, before = pod["metadata"]["name"], postfix_status(pod)
    memory = container_cgroup(node, before, "memory")
    limit = int((memory / "memory.limit_in_bytes").read_text())
    assert limit == 256 * 1024 * 1024  # the rendered default, as the kubelet applied it
    (memory / "memory.max_usage_in_bytes").write_text("0")  # the peak from here on
    subjects = [f"concurrent-{n}" for n in range(SESSIONS)]
    # Each sendmail connects, gives its envelope, then waits 30 s for the rest of its message on stdin.
    script = (
        "pids=''; for n in $(seq 0 $((N - 1))); do "
        "(printf 'Subject: concurrent-%s\\n' $n; sleep 30; printf '\\nheld open\\n') "
        '| sendmail -S mail:25 -f app@pod you@example.org & pids="$pids $!"; done; '
        "failed=0; for p in $pids; do wait $p || failed=$((failed + 1)); done; echo failed=$failed"
    )
    done: list[Any] = []
    clients = threading.Thread(
        target=lambda: done.append(
            exec_in(node, journey.namespace, "client", "env", f"N={SESSIONS}", "sh", "-c", script, check=False)
        )
    )
    clients.start()

    def established() -> int:
        """SMTP sessions the relay has open from other addresses (the probes come from loopback)."""
        tables = exec_in(node, journey.namespace, name, "cat", "/proc/net/tcp", container="postfix").stdout
        rows = [line.split() for line in tables.splitlines()[1:]]
        return sum(1 for r in rows if r[3] == "01" and r[1].endswith(":0019") and not r[2].startswith("0100007F"))

    try:
        held = eventually(lambda: (n := established()) >= SESSIONS and n, timeout=25, what=f"{SESSIONS} sessions")
    finally:
        clients.join(timeout=120)
    assert done and done[0].stdout.strip() == "failed=0", done and (done[0].stdout, done[0].stderr)
    peak = int((memory / "memory.max_usage_in_bytes").read_text())
    print(f"{held} concurrent sessions: peak {peak / 2**20:.0f} MiB of the {limit / 2**20:.0f} MiB limit")

    def arrived() -> list[dict[str, Any]]:
        found = [
            m
            for m in sink_messages(node, journey.namespace)
            if dict((k.lower(), v) for k, v in m["headers"]).get("subject") in subjects
        ]
        return found if len(found) >= SESSIONS else []

    found = eventually(arrived, timeout=120, what=f"the {SESSIONS} messages at the sink")
    assert sorted(dict((k.lower(), v) for k, v in m["headers"])["subject"] for m in found) == sorted(subjects)
    assert {m["dkim"] for m in found} == {"pass"}
    oom = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
    assert oom.get("oom_kill", "0") == "0", oom
    after = postfix_status(relay_pod(node, journey))
    assert (after["restartCount"], after.get("lastState")) == (before["restartCount"], before.get("lastState")), after


def test_the_liveness_probe_restarts_a_hung_postfix_through_the_kubelet(node: NodeCluster, journey: Journey) -> None:
    """Every process of the postfix container stopped (SIGSTOP from the node, as a hang would): its liveness
    probe times out, and the kubelet kills and restarts the container, which becomes Ready again; a message it
    had queued is still in the queue volume (an emptyDir outlives its container) and is delivered afterwards."""
    pod = relay_pod(node, journey)
    name, status = pod["metadata"]["name"], postfix_status(pod)
    # Hold outgoing mail in this container only: the restarted one starts again from the ConfigMap.
    config = "/run/mailrelay/postfix"
    exec_in(
        node,
        journey.namespace,
        name,
        "sh",
        "-c",
        f"postconf -c {config} -e defer_transports=smtp && postfix -c {config} reload",
        container="postfix",
    )
    sent = sendmail(node, journey.namespace, "queued across the restart")
    assert sent.returncode == 0, sent.stderr
    queue = exec_in(node, journey.namespace, name, "postqueue", "-p", container="postfix").stdout
    assert "you@example.org" in queue, queue
    stopped = (container_cgroup(node, status, "pids") / "cgroup.procs").read_text().split()
    assert stopped
    for pid in stopped:
        subprocess.run(["kill", "-STOP", pid], check=False)

    def restarted() -> bool:
        current = postfix_status(relay_pod(node, journey))
        return bool(current["restartCount"] > status["restartCount"] and current["ready"])

    eventually(restarted, timeout=300, what="the postfix container restarted by its liveness probe and Ready")
    events = node.kubectl(
        "get", "events", "-n", journey.namespace, "--field-selector", f"involvedObject.name={pod['metadata']['name']}"
    ).stdout
    assert "Liveness probe failed" in events
    exec_in(node, journey.namespace, name, "postqueue", "-f", container="postfix")
    assert delivered(node, journey, "queued across the restart")["mail_from"] == f"root@{journey.fqdn}"
