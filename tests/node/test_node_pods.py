"""What the kubelet and containerd make of the shipped pod specs: the journey's relay pod and the operator's pod, as
the user's cluster runs them (these checks ran under the test-side pod runner, which applies a pod spec the way we
read the kubelet's semantics; here the kubelet applies it)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from support.journey import LOGIN, Journey, delivered, relay_pod, sendmail
from support.nodekit import exec_in

if TYPE_CHECKING:
    from node import NodeCluster

pytestmark = pytest.mark.node
# Capability bits (linux/capability.h) of the set the relay's container adds (render.CAPABILITIES).
CAPABILITY_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
}


def test_the_relay_pod_gets_what_its_spec_says(node: NodeCluster, journey: Journey) -> None:
    """Read-only root; the emptyDirs as the kubelet makes them (0777), the queue and data directories made
    Postfix-safe by the entrypoint; the Secret's 0400 and the ConfigMap's 0644; no new privileges, the runtime's
    seccomp filter, and exactly the capabilities the spec adds."""
    pod = relay_pod(node, journey)
    check = exec_in(
        node,
        journey.namespace,
        pod["metadata"]["name"],
        "sh",
        "-c",
        "touch /probe-file 2>&1; stat -c '%a %U %n' /var/spool/postfix /var/lib/postfix /run/mailrelay "
        "/tmp; stat -L -c '%a %n' /etc/mailrelay/secret/password /etc/mailrelay/config/main.cf; "
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
        container="postfix",
    )
    out = check.stdout
    assert "Read-only file system" in out
    assert "755 root /var/spool/postfix" in out and "755 postfix /var/lib/postfix" in out
    assert "777 root /run/mailrelay" in out and "777 root /tmp" in out
    assert "400 /etc/mailrelay/secret/password" in out and "644 /etc/mailrelay/config/main.cf" in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "postfix"]
    added = container["securityContext"]["capabilities"]["add"]
    assert f"CapEff:\t{sum(1 << CAPABILITY_BITS[c] for c in added):016x}" in out, out


def test_the_relay_starts_clean_and_is_ready_by_its_own_probe(node: NodeCluster, journey: Journey) -> None:
    pod = relay_pod(node, journey)
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "postfix"]
    assert container["readinessProbe"]["exec"]["command"] == ["/usr/local/bin/mailrelay-probe", "ready"]
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    # The first container's start: the journey's liveness test restarts this one, and a restarted container's
    # log begins with the previous one's mail log again (log.sh follows the emptyDir's file from its start).
    [status] = [s for s in pod["status"]["containerStatuses"] if s["name"] == "postfix"]
    first = ["--previous"] if status["restartCount"] == 1 else []
    assert status["restartCount"] <= 1, status
    log = node.kubectl("logs", "-n", journey.namespace, pod["metadata"]["name"], "-c", "postfix", *first).stdout
    start_up = log.partition("daemon started")[0]
    assert "starting Postfix" in start_up and "warning" not in start_up, start_up


def test_the_smarthost_password_reaches_no_log_event_config_map_or_argument_list(
    node: NodeCluster, journey: Journey
) -> None:
    sent = sendmail(node, journey.namespace, "password check")
    assert sent.returncode == 0, sent.stderr
    assert delivered(node, journey, "password check")["login"] == LOGIN[0]  # the password was used
    pod = relay_pod(node, journey)
    name = pod["metadata"]["name"]
    places = {
        f"kubectl logs -c {c['name']}": node.kubectl("logs", "-n", journey.namespace, name, "-c", c["name"]).stdout
        for c in pod["spec"]["containers"]
    }
    places["events"] = node.kubectl("get", "events", "-n", journey.namespace, "-o", "yaml").stdout
    places["config maps"] = node.kubectl("get", "configmaps", "-n", journey.namespace, "-o", "yaml").stdout
    for container in pod["spec"]["containers"]:
        places[f"argv in {container['name']}"] = exec_in(
            node,
            journey.namespace,
            name,
            "sh",
            "-c",
            "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
            container=container["name"],
        ).stdout
    assert all(places.values())
    assert [where for where, text in places.items() if LOGIN[1] in text] == []


def operator_pod(node: NodeCluster, namespace: str) -> dict[str, Any]:
    [pod] = node.get("pods", "-n", namespace, "-l", "app.kubernetes.io/name=mailrelay-operator")["items"]
    return dict(pod)


def test_the_operator_runs_as_its_non_root_user_with_a_read_only_root(node: NodeCluster, operator: str) -> None:
    name = operator_pod(node, operator)["metadata"]["name"]
    done = exec_in(
        node,
        operator,
        name,
        "python3",
        "-c",
        "import os; print(os.getuid(), os.getgid()); open('/x', 'w')",
        check=False,
    )
    assert done.stdout.split() == ["10001", "10001"] and "Read-only file system" in done.stderr, done


def test_the_operators_metrics_say_it_leads_and_reconciled(node: NodeCluster, operator: str, journey: Journey) -> None:
    """Its metrics port, as its Deployment names it, read inside its pod (the relay of the journey was reconciled)."""
    pod = operator_pod(node, operator)
    [port] = [
        p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if p["name"] == "metrics"
    ]
    read = (
        "import json, urllib.request; "
        f"print(json.dumps(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=10).read().decode()))"
    )
    text = json.loads(exec_in(node, operator, pod["metadata"]["name"], "python3", "-c", read).stdout)
    assert re.search(r"^mailrelay_operator_leader 1\.0$", text, re.M), text
    passes = re.findall(r'^mailrelay_operator_reconcile_passes_total\{trigger="(\w+)"\} ([0-9.]+)$', text, re.M)
    counts = {trigger: float(count) for trigger, count in passes}
    # The journey's relay was created and its children written and watched (the work queue's `why`s are open-ended).
    assert counts.get("create", 0) >= 1 and counts.get("child", 0) >= 1, text
