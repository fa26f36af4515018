"""A ClusterSmarthost's egress tier on this machine's Postfix, and tenant relays that log in to it.

The egress instance gets the files `render_egress` puts in its ConfigMap, its keys Secret as a
root-only directory, and the Postfix container's environment from the rendered Deployment; the
image's entrypoint builds its logins (`mailrelay-gate logins`), and the sender gate runs beside it
through the image's own wrapper script, as its container does. `set_tenants` plays the kubelet
updating the ConfigMap mount. Tenant relays are MailRelays resolved as the operator resolves them
(controller.tenancy), their login Secret's content as the operator derives it, sending to the
egress instance's loopback port instead of its Service.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from mailrelay import scripts
from mailrelay.api import egress_keys
from mailrelay.api import smarthost as api
from mailrelay.api.spec import MailRelay
from mailrelay.controller import tenancy
from mailrelay.gate import tenants as gate
from mailrelay.gate.logins import TENANT_FILES
from mailrelay.render import egress
from mailrelay.render.egress import render_egress

from support.paths import ROOT
from support.postfix_harness import HarnessPostfix
from support.smtp_sink import free_port

OPERATOR_NAMESPACE = "mailrelay-system"


def rendered_env(smarthost: api.ClusterSmarthost, tenants: tuple[gate.Tenant, ...]) -> dict[str, str]:
    """The egress Postfix container's plain environment variables, from the rendered Deployment."""
    deployment = next(
        o for o in render_egress(smarthost, OPERATOR_NAMESPACE, tenants).objects if o["kind"] == "Deployment"
    )
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "postfix"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


class EgressPostfix(HarnessPostfix):
    def __init__(
        self,
        smarthost: api.ClusterSmarthost,
        tenants: tuple[gate.Tenant, ...],
        workdir: Path,
        *,
        keys: dict[str, bytes],
        port: int,
        handoff_port: int | None = None,
        secret: dict[str, str] | None = None,
    ) -> None:
        self.smarthost = smarthost
        files = egress.config_files(smarthost, OPERATOR_NAMESPACE, tenants)
        super().__init__(
            egress.egress_relay(smarthost, OPERATOR_NAMESPACE), workdir, port=port, secret=secret, extra_files=files
        )
        self.keys_dir = workdir / "egress-keys"
        self.keys_dir.mkdir(mode=0o700, exist_ok=True)
        for key, value in keys.items():
            (self.keys_dir / key).write_bytes(value)
            (self.keys_dir / key).chmod(0o400)
        self.gate_port = free_port()
        self.gate: subprocess.Popen[bytes] | None = None
        env = rendered_env(smarthost, tenants)
        self.handoff = f"127.0.0.1:{handoff_port}" if handoff_port else ""
        self.extra_env.update(
            {
                **{
                    k: v
                    for k, v in env.items()
                    if k.startswith("MAILRELAY_HANDOFF_") and k != "MAILRELAY_HANDOFF_TARGET"
                },
                "MAILRELAY_GATE": " ".join(scripts.command("gate.sh")),
                "MAILRELAY_GATE_LISTEN": f"127.0.0.1:{self.gate_port}",
                "MAILRELAY_PYTHON_LIB": str(ROOT / "operator"),
                "MAILRELAY_EGRESS_DIR": str(self.keys_dir),
                "MAILRELAY_HANDOFF_TARGET": self.handoff,
            }
        )

    def start(self, timeout: float = 30.0) -> None:
        if self.gate is None or self.gate.poll() is not None:
            with (self.workdir / "gate.out").open("ab") as out:
                self.gate = subprocess.Popen(
                    [
                        *scripts.command("gate.sh"),
                        "milter",
                        f"127.0.0.1:{self.gate_port}",
                        str(self.source / gate.FILE),
                        "0",
                    ],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        super().start(timeout)

    def set_tenants(self, tenants: tuple[gate.Tenant, ...]) -> None:
        """The kubelet's part: the ConfigMap mount gets the new tenant files, each swapped whole."""
        files = egress.config_files(self.smarthost, OPERATOR_NAMESPACE, tenants)
        for name in TENANT_FILES:
            new = self.source / f".{name}.new"
            new.write_text(files[name])
            new.replace(self.source / name)

    def gate_log(self) -> str:
        path = self.workdir / "gate.out"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        super().stop()
        if self.gate is not None and self.gate.poll() is None:
            os.killpg(self.gate.pid, signal.SIGTERM)
            self.gate.wait(timeout=10)


def tenant(
    relay: MailRelay, smarthost: api.ClusterSmarthost, namespace_labels: dict[str, str] | None = None
) -> gate.Tenant:
    """The tenant record the operator writes for an admitted relay."""
    admitted = api.admission(smarthost, relay.namespace, namespace_labels or {})
    assert admitted.allowed, f"{relay.namespace} is not admitted"
    return gate.Tenant(
        login=api.login(relay.namespace, relay.name),
        uid=relay.uid or "",
        namespace=relay.namespace,
        domains=admitted.domains,
        messages_per_minute=admitted.limits.messages_per_minute,
        recipients_per_minute=admitted.limits.recipients_per_minute,
    )


def login(relay: MailRelay, keys: dict[str, bytes]) -> dict[str, str]:
    """The tenant login Secret's content, as the operator derives it."""
    name = api.login(relay.namespace, relay.name)
    return {"username": name, "password": gate.password(gate.decode_key(keys[gate.LOGIN_KEY]), name, relay.uid or "")}


def tenant_relay(
    relay: MailRelay, smarthost: api.ClusterSmarthost, egress_instance: Any, keys: dict[str, bytes]
) -> MailRelay:
    """The relay as the operator renders it, sending to the egress instance on loopback."""
    return tenancy.resolve(
        relay,
        smarthost,
        host=egress_instance.listen,
        port=egress_instance.port,
        pin=egress_keys.fingerprint(keys[egress_keys.TLS_CERT]),
        login_secret=tenancy.login_secret_name(relay),
    )
