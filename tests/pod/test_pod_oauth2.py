"""A relay whose smarthost wants OAuth2, as a pod: the rendered Deployment under runc, with the token
Secret the operator's TokenKeeper writes and the XOAUTH2 relay container the image ships.

What is real: the pod spec and ConfigMap `render` produces, both images, Postfix, the XOAUTH2
container's own command, the keeper's token request and Secret. What plays a part: the token
endpoint and the XOAUTH2 smarthost are doubles (tests/support/oauth_doubles.py, no real provider is
reachable); the endpoint stays on the host's loopback because only the operator ever calls it, and
the smarthost listens on the host end of the pod's veth. The pod's trust store is the one change
to what the image brings: the test CA is mounted over /etc/ssl/certs/ca-certificates.crt (as a
node with a private smarthost CA would mount a trust bundle; `Pod.node_files`), so the relay
verifies the smarthost's certificate for its address exactly as it would a provider's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api.names import SECRET_GRANT_ANNOTATION
from mailrelay.controller.oauth import TokenKeeper
from mailrelay.oauth import client
from mailrelay.render import relay as render
from mailrelay.render.xoauth2 import TOKEN_DIR, TOKEN_KEY, token_secret_name

from support.loopback_ca import LoopbackCA
from support.mail import message
from support.oauth_doubles import SecretsApi, TokenEndpoint, XOAuth2Smarthost
from support.podrunner import Pod, PodNetwork, wait_until
from support.podrunner.container import runc
from support.relay_pod import CLIENT, FQDN, relay_spec, rendered_pod
from support.samples import make_relay

USER = f"relay@{FQDN}"
CLIENT_SECRET = "client-secret-1"
TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class OAuthPod:
    pod: Pod
    smarthost: XOAuth2Smarthost
    endpoint: TokenEndpoint
    service_port: int


def token_secret(ca: LoopbackCA, endpoint: TokenEndpoint, spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """One pass of the operator's TokenKeeper against the endpoint: the Secret it writes, decoded."""
    relay = make_relay(spec, name="relay")
    api = SecretsApi()
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "oauth",
                "namespace": relay.namespace,
                "annotations": {SECRET_GRANT_ANNOTATION: "relay"},
            },
            "data": {"client-secret": base64.b64encode(CLIENT_SECRET.encode()).decode()},
        }
    )
    keeper = TokenKeeper(fetch=lambda request: client.fetch(request, context=ca.client_context()))
    tokens = keeper.keep(api, relay, {})
    assert tokens.problem is None and not tokens.failing, tokens
    name = token_secret_name(relay)
    assert name is not None
    secret = api.get("Secret", relay.namespace, name)
    assert secret is not None
    return name, {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def service_target_port(spec: dict[str, Any], pod: Pod) -> int:
    """The port the rendered Service `mail` sends its port 25 to, on the pod (what kube-proxy would DNAT to)."""
    [service] = [o for o in render.render_relay(make_relay(spec, name="relay")).objects if o["kind"] == "Service"]
    [port] = [p for p in service["spec"]["ports"] if p["port"] == 25]
    target = port["targetPort"]
    if isinstance(target, int):
        return target
    return next(
        p["containerPort"] for c in pod.spec["containers"] for p in c.get("ports", []) if p.get("name") == target
    )


@pytest.fixture(scope="module")
def oauth_pod(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthPod]:
    network = PodNetwork().create()
    network.add_host_address(CLIENT)
    ca = LoopbackCA(tmp_path_factory.mktemp("oauth-ca"), addresses=(network.gateway,))
    endpoint = TokenEndpoint(ca)
    smarthost = XOAuth2Smarthost(endpoint, ca, USER, host=network.gateway).start()
    oauth2 = endpoint.relay_oauth2("ClientCredentials", USER)
    spec = relay_spec(network, smarthost, tls="Encrypt", authType="OAuth2", oauth2=oauth2)
    name, data = token_secret(ca, endpoint, spec)
    pod = rendered_pod(spec, network, secrets={name: data})
    pod.node_files[TRUST_STORE] = ca.ca_file
    try:
        pod.start().wait_ready()
        yield OAuthPod(pod, smarthost, endpoint, service_target_port(spec, pod))
    finally:
        pod.stop()
        smarthost.stop()
        endpoint.stop()
        network.delete()


def send(rig: OAuthPod, envelope_from: str, seq: str) -> None:
    """From the host's network namespace, an address inside allowedNetworks, to the Service's target port."""
    source = rig.pod.network.address(CLIENT)
    with smtplib.SMTP(rig.pod.network.pod_ip, rig.service_port, source_address=(source, 0), timeout=30) as smtp:
        msg = message(envelope_from, **{"X-Seq": seq})
        smtp.send_message(msg, from_addr=envelope_from, to_addrs=["ops@example.org"])


def delivered(rig: OAuthPod, seq: str) -> Any:
    def find() -> Any:
        return next((r for r in rig.smarthost.received if r.header("X-Seq") == seq), None)

    try:
        return wait_until(find, 60, f"message {seq} at the smarthost")
    except AssertionError:
        raise AssertionError("\n".join(f"--- {c.name}:\n{c.log()[-3000:]}" for c in rig.pod.containers)) from None


def test_mail_leaves_the_pod_through_xoauth2_with_the_token_the_endpoint_issued(oauth_pod: OAuthPod) -> None:
    rig = oauth_pod
    send(rig, "app@pod-1", "delivery")
    got = delivered(rig, "delivery")
    assert got.mail_from == f"app@{FQDN}" and got.header("From") == f"app@{FQDN}"
    assert got.rcpt_tos == ["ops@example.org"]
    [issued] = rig.endpoint.issued  # one client-credentials grant, by the keeper
    assert rig.endpoint.grants("client_credentials") == 1
    assert rig.smarthost.logins and {(login.user, login.token, login.accepted) for login in rig.smarthost.logins} == {
        (USER, issued, True)
    }
    assert rig.smarthost.malformed == []
    assert "status=sent" in rig.pod.log("postfix")


def pod_processes(pod: Pod) -> dict[int, tuple[str, bytes, bytes]]:
    """Every process in the pod's containers (each its own pid namespace): pid → (container, argv, environ)."""
    found: dict[int, tuple[str, bytes, bytes]] = {}
    for container in pod.containers:
        state = runc("state", container.id)
        assert state.returncode == 0, f"container {container.name} is not running"
        namespace = os.readlink(f"/proc/{json.loads(state.stdout)['pid']}/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                if os.readlink(entry / "ns/pid") == namespace:
                    argv, environ = (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
                    found[int(entry.name)] = (container.name, argv, environ)
    return found


def test_the_token_is_in_no_argv_environment_or_log_and_only_the_xoauth2_container_mounts_it(
    oauth_pod: OAuthPod,
) -> None:
    rig = oauth_pod
    send(rig, "app@pod-1", "secrecy")
    delivered(rig, "secrecy")
    processes = pod_processes(rig.pod)
    assert {name for name, _, _ in processes.values()} == {c.name for c in rig.pod.containers}
    assert any(b"mailrelay.relayd" in argv for _, argv, _ in processes.values())  # the process holding the token
    assert any(b"master" in argv for name, argv, _ in processes.values() if name == "postfix")
    issued = list(rig.endpoint.issued)
    secrets = [*issued, CLIENT_SECRET]
    secrets += [base64.b64encode(f"user={USER}\x01auth=Bearer {t}\x01\x01".encode()).decode() for t in issued]
    shown = {
        f"{name} pid {pid} argv and environment": argv + b"\0" + env for pid, (name, argv, env) in processes.items()
    }
    shown |= {f"{c.name}'s log": c.log_path.read_bytes() for c in rig.pod.containers}
    shown |= {f"volume file {p}": p.read_bytes() for p in (rig.pod.volumes.base / "log").rglob("*") if p.is_file()}
    leaks = {where: [s for s in secrets if s.encode() in text] for where, text in shown.items()}
    assert leaks == {where: [] for where in shown}
    token_file = f"{TOKEN_DIR}/{TOKEN_KEY}"
    assert rig.pod.exec("cat", token_file, container="xoauth2").stdout.count(issued[0]) == 1  # the one reader
    for container in ("postfix", "metrics"):
        result = rig.pod.exec("cat", token_file, container=container)
        assert result.returncode != 0 and "No such file" in result.stderr
