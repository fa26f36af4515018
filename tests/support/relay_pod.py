"""The relay pod under runc as the operator renders it, and a client on the host end of its veth."""

from __future__ import annotations

import smtplib
from typing import Any

from mailrelay.render import relay

from support.mail import message
from support.podrunner import Pod, PodNetwork
from support.samples import make_relay
from support.smtp_sink import Sink

FQDN = "mail.example.com"
CLIENT, OUTSIDER = 20, 100  # host parts: inside allowedNetworks (.16/28) and outside it


def relay_spec(network: PodNetwork, sink: Sink, fqdn: str = FQDN, **relay: Any) -> dict[str, Any]:
    return {
        "mailFromFQDN": fqdn,
        "allowedNetworks": [f"{network.address(16)}/28"],
        "relay": {"host": network.gateway, "port": sink.port, "tls": "None", **relay},
    }


def rendered_pod(
    spec: dict[str, Any], network: PodNetwork, secrets: dict[str, dict[str, str]] | None = None, name: str = "relay"
) -> Pod:
    """The pod the operator's children describe: the rendered ConfigMap's data and Deployment."""
    children = {child["kind"]: child for child in relay.render_relay(make_relay(spec, name=name)).objects}
    config_map, deployment = children["ConfigMap"], children["Deployment"]
    return Pod(
        deployment, config_maps={config_map["metadata"]["name"]: config_map["data"]}, secrets=secrets, network=network
    )


def send(pod: Pod, envelope_from: str, *, source: int = CLIENT, header: str | None = None) -> None:
    address = pod.network.address(source)
    with smtplib.SMTP(pod.network.pod_ip, 25, source_address=(address, 0), timeout=30) as smtp:
        smtp.send_message(message(header or envelope_from), from_addr=envelope_from, to_addrs=["ops@example.org"])
