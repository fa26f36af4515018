"""A ClusterSmarthost's two tiers as they ship: the egress pod and two tenant relay pods under runc.

Every object comes from the operator's own passes (its Context on the in-memory API, as
tests/unit/test_smarthost_controller.py runs it): the egress Deployment, ConfigMap and keys Secret
in the operator's namespace, each tenant's Deployment, ConfigMap and minted login Secret in its own.
The pods run from those objects (tests/support/podrunner/). Each pod has its own network namespace;
the host plays the node: the egress Service's address on each tenant's network forwards to the
egress pod (kube-proxy's part) and the tenant pods' /etc/hosts answers for the Service's name (the
cluster DNS's part). The smarthost is an aiosmtpd sink on the egress pod's network that wants the
platform's login; clients send from the host end of each tenant pod's veth.
"""

from __future__ import annotations

import base64
import contextlib
import json
import smtplib
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api.names import SMARTHOST_KIND
from mailrelay.controller import delivery, smarthosts
from mailrelay.controller.context import Context
from mailrelay.controller.observe import Platform
from mailrelay.controller.settings import Settings
from mailrelay.kube.leader import Leadership
from mailrelay.render import egress, postfix, relay, sidecar
from mailrelay.version import RELEASED_POSTFIX_IMAGE

from support import mail
from support.fake_api import FakeApi
from support.mail import message
from support.one_pass import CLOCK, settle
from support.paths import ROOT
from support.podrunner import Pod, PodNetwork, wait_until
from support.podrunner.container import runc
from support.podrunner.network import Forwarder
from support.smtp_sink import Sink, free_port

OPNS = "mailrelay-system"
PLATFORM = ("platform@example.com", "platform-secret-Hv83q")
ADMITTED = {"mail.example.com/smarthost": "company"}
TENANTS = ("shop", "web")
CLIENT, SERVICE, BY_HAND = 20, 40, 60  # host parts: a client pod, the egress Service, a tenant by hand


@dataclass
class Tiers:
    api: FakeApi
    sink: Sink
    egress: Pod
    tenants: dict[str, Pod] = field(default_factory=dict)

    def login(self, namespace: str) -> dict[str, str]:
        """The minted login Secret of the tenant relay in `namespace`, as the operator wrote it."""
        return decoded(self.api, "Secret", namespace, "mailrelay-mail-smarthost-login")


def decoded(api: FakeApi, kind: str, namespace: str, name: str) -> dict[str, str]:
    found = api.cached(kind, namespace, name)
    assert found is not None, (kind, namespace, name)
    if kind == "ConfigMap":
        return dict(found["data"])
    return {key: base64.b64decode(value).decode() for key, value in found["data"].items()}


def objects(api: FakeApi, kind: str, namespace: str) -> dict[str, dict[str, str]]:
    """Every ConfigMap's or Secret's content in `namespace`: what the kubelet would mount from it."""
    return {name: decoded(api, kind, namespace, name) for (k, ns, name) in api.objects if k == kind and ns == namespace}


def deployment(api: FakeApi, namespace: str, name: str) -> dict[str, Any]:
    found = api.cached("Deployment", namespace, name)
    assert found is not None, (namespace, name)
    return found


def operator_state(egress_network: PodNetwork, sink: Sink, tenant_networks: dict[str, PodNetwork]) -> FakeApi:
    """The cluster after the operator's passes: a ClusterSmarthost, its login, two admitted tenants."""
    api = FakeApi()
    for ns in TENANTS:
        api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": dict(ADMITTED)}})
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "company-login", "namespace": OPNS},
            "data": {
                k: base64.b64encode(v.encode()).decode()
                for k, v in zip(("username", "password"), PLATFORM, strict=True)
            },
        }
    )
    api.put(
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": SMARTHOST_KIND,
            "metadata": {"name": "company"},
            "spec": {
                "host": egress_network.gateway,
                "port": sink.port,
                "tls": "None",
                "authSecretRef": {"name": "company-login"},
                "allowedNamespaces": [
                    {"namespaceSelector": {"matchLabels": ADMITTED}, "senderDomains": ["{namespace}.apps.example.com"]}
                ],
            },
        }
    )
    for ns, network in tenant_networks.items():
        api.relay(
            ns,
            "mail",
            mailFromFQDN=f"{ns}.apps.example.com",
            smarthostRef={"name": "company"},
            allowedNetworks=[f"{network.address(16)}/28"],
        )
    context = Context(
        store=api,
        settings=Settings(postfix_image=RELEASED_POSTFIX_IMAGE),
        leadership=Leadership.unconditional("test-replica"),
        clock=lambda: CLOCK,
        platform=Platform(OPNS, served=True),
    )
    settle(context, smarthosts.key("company"))
    return api


@pytest.fixture(scope="module")
def tiers(images: dict[str, str]) -> Iterator[Tiers]:
    assert RELEASED_POSTFIX_IMAGE in images  # the pods run the image built from this checkout
    made: list[Any] = []
    try:
        egress_network = PodNetwork().create()
        made.append(egress_network)
        egress_network.add_host_address(BY_HAND)
        sink = Sink(host=egress_network.gateway, port=free_port(egress_network.gateway), credentials=PLATFORM)
        made.append(sink.start())
        networks = {ns: PodNetwork().create() for ns in TENANTS}
        made += networks.values()
        api = operator_state(egress_network, sink, networks)
        name = egress.name("company")
        pod = Pod(
            deployment(api, OPNS, name),
            config_maps=objects(api, "ConfigMap", OPNS),
            secrets=objects(api, "Secret", OPNS),
            network=egress_network,
        )
        made.append(pod)
        found = Tiers(api, sink, pod.start())
        service = egress.hostname("company", OPNS)
        for ns, network in networks.items():
            network.add_host_address(CLIENT)
            address = network.add_host_address(SERVICE)
            made.append(Forwarder((address, postfix.SMTP_PORT), (egress_network.pod_ip, postfix.SMTP_PORT)))
            found.tenants[ns] = Pod(
                deployment(api, ns, "mailrelay-mail"),
                config_maps=objects(api, "ConfigMap", ns),
                secrets=objects(api, "Secret", ns),
                network=network,
                name=f"mailrelay-mail-{ns}",
                hosts={service: address},
            )
            made.append(found.tenants[ns])
        pod.wait_ready(timeout=120)
        for tenant in found.tenants.values():
            tenant.start().wait_ready(timeout=120)
        yield found
    finally:
        for thing in reversed(made):
            if isinstance(thing, Pod | Sink):
                thing.stop()
            elif isinstance(thing, Forwarder):
                thing.close()
            else:
                thing.delete()


def send(pod: Pod, envelope_from: str, header: str) -> str:
    """A client pod's sendmail towards the Service `mail`; the Message-ID it sent."""
    sent = message(header)
    with smtplib.SMTP(pod.network.pod_ip, 25, source_address=(pod.network.address(CLIENT), 0), timeout=30) as smtp:
        smtp.send_message(sent, from_addr=envelope_from, to_addrs=["ops@example.org"])
    return str(sent["Message-ID"])


def logged(pod: Pod, text: str) -> str:
    """The pod's log once it shows `text` (Postfix's log file reaches the container's stdout a bit later)."""
    return str(wait_until(lambda: text in (found := pod.log()) and found, 30, repr(text)))


def test_two_tenant_pods_deliver_through_the_egress_pod_once_with_their_own_domains(tiers: Tiers) -> None:
    sent = {
        ns: send(pod, f"app@pod.{ns}.svc.cluster.local", f"App <app@pod.{ns}.svc.cluster.local>")
        for ns, pod in tiers.tenants.items()
    }
    received = tiers.sink.wait_for(2, timeout=90)
    time.sleep(3)  # a duplicate would arrive now
    assert len(tiers.sink.received) == 2
    by_id = {r.header("Message-ID"): r for r in received}
    assert Counter(r.header("Message-ID") for r in tiers.sink.received) == Counter(sent.values())
    for ns, message_id in sent.items():
        got = by_id[message_id]
        assert got.mail_from == f"app@{ns}.apps.example.com"
        assert str(got.header("From")) == f"App <app@{ns}.apps.example.com>"
    assert {r.auth for r in received} == {PLATFORM}  # the smarthost saw the platform's login only
    log = tiers.egress.log()
    assert "sasl_username=shop.mail@mailrelay" in log and "sasl_username=web.mail@mailrelay" in log
    for ns, pod in tiers.tenants.items():
        pod_log = logged(pod, "status=sent")
        assert "Verified TLS connection established" in pod_log, ns  # the pinned fingerprint matched
        assert "status=sent" in pod_log and "status=bounced" not in pod_log, ns
    assert "status=bounced" not in log


def by_hand(tiers: Tiers, credentials: dict[str, str], sender: str, header_from: str) -> tuple[int, str]:
    """A tenant who took its relay's login speaks SMTP to the egress pod: the reply to its mail."""
    network = tiers.egress.network
    return mail.by_hand((network.pod_ip, 25), credentials, sender, header_from, source=network.address(BY_HAND))


def test_a_minted_login_is_refused_by_the_egress_pod_for_another_tenants_domain(tiers: Tiers) -> None:
    shop = tiers.login("shop")
    assert shop["username"] == "shop.mail" and PLATFORM[1] not in shop.values()
    before = len(tiers.sink.received)
    code, text = by_hand(tiers, shop, "x@web.apps.example.com", "x@web.apps.example.com")
    assert code // 100 == 4 and "not owned by user shop.mail@mailrelay" in text, (code, text)  # Postfix
    code, text = by_hand(tiers, shop, "x@shop.apps.example.com", "x@web.apps.example.com")
    assert code // 100 == 4 and "not within the sender domains of shop" in text, (code, text)  # the gate
    time.sleep(2)
    assert len(tiers.sink.received) == before
    code, text = by_hand(tiers, shop, "x@shop.apps.example.com", "x@shop.apps.example.com")
    assert code == 250, text  # the control: the same login with its own domain is relayed
    [got] = tiers.sink.wait_for(before + 1, timeout=60)[before:]
    assert got.mail_from == "x@shop.apps.example.com" and got.auth == PLATFORM


def test_the_egress_pods_metrics_and_the_shipped_pod_monitor_that_scrapes_them(tiers: Tiers) -> None:
    import yaml

    pod = tiers.egress
    labels = deployment(tiers.api, OPNS, egress.name("company"))["spec"]["template"]["metadata"]["labels"]
    monitors = yaml.safe_load_all((ROOT / "manifests" / "monitoring" / "podmonitors.yaml").read_text())
    [relays] = [m for m in monitors if m["metadata"]["name"] == "mailrelay-operator-relays"]
    assert relays["spec"]["selector"]["matchLabels"].items() <= labels.items()  # its pods are scraped
    [port] = [p for p in pod.named(sidecar.CONTAINER).spec["ports"] if p["name"] == sidecar.PORT_NAME]
    assert relays["spec"]["podMetricsEndpoints"][0]["port"] == port["name"]

    def scraped() -> str:
        with urllib.request.urlopen(
            f"http://{pod.network.pod_ip}:{port['containerPort']}{sidecar.PATH}", timeout=10
        ) as answer:
            return str(answer.read().decode())

    before = len(tiers.sink.received)
    send(tiers.tenants["shop"], "app@pod.shop.svc.cluster.local", "app@pod.shop.svc.cluster.local")
    tiers.sink.wait_for(before + 1, timeout=60)
    text = scraped()
    assert any(line.startswith("postfix_up{") and line.endswith(" 1") for line in text.splitlines()), text
    sample = wait_until(
        lambda: (s := delivery.parse(scraped())) is not None and s.attempts >= 1 and not any(s.queues.values()) and s,
        60,
        "delivery attempts and an empty queue in the egress pod's metrics",
    )
    assert sample.deferred_attempts == 0, sample
    assert [c.name for c in pod.containers][:2] == [relay.CONTAINER, sidecar.CONTAINER] and pod.restarts == 0


def traces(pod: Pod, secret: bytes) -> list[str]:
    """Where `secret` is in the pod: its files as the node holds them (volumes: Secrets, ConfigMaps,
    the queue, logs; runtime configs) and its processes' environment and argument lists."""
    found = [str(f) for f in pod.dir.rglob("*") if f.is_file() and not f.is_symlink() and secret in f.read_bytes()]
    for container in pod.containers:
        listed = runc("ps", "--format", "json", container.id, check=True).stdout
        pids = json.loads(listed) or []
        assert pids, container.name
        for pid in pids:
            for part in ("environ", "cmdline"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a process that just ended
                    if secret in Path(f"/proc/{pid}/{part}").read_bytes():
                        found.append(f"{container.name}: pid {pid} {part}")
    return found


def test_no_trace_of_the_platform_login_in_the_tenant_pods(tiers: Tiers) -> None:
    before = len(tiers.sink.received)
    for ns, pod in tiers.tenants.items():
        send(pod, f"app@pod.{ns}.svc.cluster.local", f"app@pod.{ns}.svc.cluster.local")
    tiers.sink.wait_for(before + 2, timeout=60)
    secret = PLATFORM[1].encode()
    for ns, pod in tiers.tenants.items():
        assert traces(pod, secret) == [], ns
    # The control: the scan finds the login where it belongs, the egress pod's Secret volume, and only
    # as a file there (its logins are built by a builtin, never on an argument list).
    held = traces(tiers.egress, secret)
    assert held and all("/volumes/" in place for place in held), held
