"""The operator's Deployment run as its pod would be, against the real control plane: the kubelet's
service-account volume with a TokenRequest token of the Deployment's ServiceAccount, and the API server
at the `kubernetes` Service's address, forwarded from the pod's network to the apiserver on loopback."""

from __future__ import annotations

import copy
from typing import Any

from support.podrunner.network import Forwarder, PodNetwork
from support.podrunner.pod import SERVICE_HOST, Pod


class OperatorPod:
    """start() runs the pod; stop() stops it and its forwarder, as the kubelet stops a deleted pod."""

    def __init__(self, plane: Any, deployment: dict[str, Any], network: PodNetwork, **env: str) -> None:
        self.plane, self.network = plane, network
        self.deployment = copy.deepcopy(deployment)
        [container] = self.deployment["spec"]["template"]["spec"]["containers"]
        container["env"] = [*container.get("env", []), *({"name": k, "value": v} for k, v in env.items())]
        self.container: dict[str, Any] = container
        self.pod: Pod | None = None
        self.forwarder: Forwarder | None = None

    def start(self) -> Pod:
        meta, spec = self.deployment["metadata"], self.deployment["spec"]["template"]["spec"]
        namespace, account = meta["namespace"], spec.get("serviceAccountName", "default")
        token = self.plane.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
        )["status"]["token"]
        self.network.add_address(SERVICE_HOST)
        host, port = self.plane.server.removeprefix("https://").rsplit(":", 1)
        self.forwarder = Forwarder((SERVICE_HOST, 443), (host, int(port)))
        ca = (self.plane.pki / "ca.crt").read_text()
        self.pod = Pod(
            self.deployment,
            config_maps={},
            network=self.network,
            service_account={"token": token, "ca.crt": ca, "namespace": namespace},
        )
        return self.pod.start()

    def log(self) -> str:
        return self.pod.log() if self.pod else ""

    def stop(self) -> None:
        if self.pod is not None:
            self.pod.stop()
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
