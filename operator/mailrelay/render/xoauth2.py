"""The relay pod's XOAUTH2 container (mailrelay.relayd), its configuration file and its token volume.

Only relays whose smarthost login is OAuth2 have it. Postfix's smtp transport delivers to it on
loopback (render.postfix points relayhost there), and it relays to the smarthost with TLS and
AUTH XOAUTH2. The access token lives in a Secret the operator keeps fresh (controller.oauth) and
mounts into this container only: neither Postfix nor the metrics sidecar can read it, and the
refresh token or client secret never enters the pod at all.
"""

from __future__ import annotations

import json
from typing import Any

from mailrelay.api.spec import MailRelay, MailRelaySpec

CONTAINER = "xoauth2"
CONFIG_FILE = "xoauth2.json"
COMMAND = "/usr/local/bin/mailrelay-xoauth2"
LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 10587  # loopback only: Postfix in the same pod is its one client
CONFIG_DIR = "/etc/mailrelay/xoauth2"
TOKEN_DIR = "/etc/mailrelay/oauth2-token"
TOKEN_KEY = "token"  # one JSON document: the token and its expiry, swapped together by the kubelet
TOKEN_VOLUME = "oauth2-token"
USER = 65534  # nobody: it needs no privilege at all
RESOURCES = {"requests": {"cpu": "5m", "memory": "24Mi"}, "limits": {"memory": "128Mi"}}


def enabled(spec: MailRelaySpec) -> bool:
    return spec.relay is not None and spec.relay.oauth2 is not None


def token_secret_name(relay: MailRelay) -> str | None:
    """The operator's Secret with the current access token; None without OAuth2."""
    return f"mailrelay-{relay.name}-oauth2-token" if enabled(relay.spec) else None


def config(spec: MailRelaySpec, linger_seconds: int) -> dict[str, Any]:
    assert spec.relay is not None and spec.relay.oauth2 is not None
    return {
        "listen": f"{LISTEN_HOST}:{LISTEN_PORT}",
        "host": spec.relay.host,
        "port": spec.relay.port,
        "tls": spec.relay.tls,
        "username": spec.relay.oauth2.username,
        "helo": spec.mail_from_fqdn,
        "tokenFile": f"{TOKEN_DIR}/{TOKEN_KEY}",
        # Postfix's preStop drain delivers through this container for this long after SIGTERM.
        "lingerSeconds": linger_seconds,
    }


def config_files(spec: MailRelaySpec, linger_seconds: int) -> dict[str, str]:
    if not enabled(spec):
        return {}
    return {CONFIG_FILE: json.dumps(config(spec, linger_seconds), indent=2, sort_keys=True) + "\n"}


def volumes(relay: MailRelay, config_map: str) -> list[dict[str, Any]]:
    secret = token_secret_name(relay)
    if secret is None:
        return []
    return [
        {
            "name": "xoauth2-config",
            "configMap": {"name": config_map, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        },
        # optional: the pod starts before the first token exists; mail waits (4xx) until it does.
        # 0444 inside a mount no other container has, read by the one non-root process here.
        {
            "name": TOKEN_VOLUME,
            "secret": {
                "secretName": secret,
                "optional": True,
                "defaultMode": 0o444,
                "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
            },
        },
    ]


def container(image: str) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [COMMAND, f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "volumeMounts": [
            {"name": "xoauth2-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        ],
        "resources": RESOURCES,
        "securityContext": {
            "runAsUser": USER,
            "runAsGroup": USER,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
