"""The relay pod's metrics sidecar: Debian's prometheus-postfix-exporter, from the relay image itself.

Postfix writes its log to a file on a shared emptyDir instead of stdout; the relay container copies
that file to its stdout (image/postfix/log.sh), so `kubectl logs` still shows Postfix's log, and the
sidecar follows the same file for its delivery counters and reads the queue through Postfix's
showq socket. A separate container, so a stuck scrape never delays SMTP and the exporter's memory is
accounted apart from Postfix's.
"""

from __future__ import annotations

from typing import Any

CONTAINER = "metrics"
PORT = 9154
PORT_NAME = "metrics"
PATH = "/metrics"
LOG_DIR = "/var/log/mailrelay"
MAILLOG = f"{LOG_DIR}/maillog"
LOG_VOLUME = "log"
LOG_SIZE_LIMIT = "64Mi"
# The relay container truncates the file past this size (image/postfix/log.sh), well within the volume.
MAILLOG_MAX_BYTES = 16 * 1024 * 1024
COMMAND = "/usr/local/bin/mailrelay-metrics"
LOG_ECHO = "/usr/local/bin/mailrelay-log"
RESOURCES = {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
# Postfix's public/ directory is postfix:postdrop 0710: reading the showq socket in it takes
# a capability (or a uid the image assigns at build time, which the operator cannot know).
# DAC_OVERRIDE rather than the narrower DAC_READ_SEARCH: the Pod Security baseline level, which relay
# namespaces enforce, allows the one and refuses the other. Its write half has nothing to act on:
# the root filesystem and both mounts are read-only.
CAPABILITIES = ["DAC_OVERRIDE"]


def log_volume() -> dict[str, Any]:
    return {"name": LOG_VOLUME, "emptyDir": {"sizeLimit": LOG_SIZE_LIMIT}}


def relay_env() -> list[dict[str, str]]:
    """What the relay container needs to log to the shared file and copy it to stdout."""
    return [
        {"name": "MAILRELAY_MAILLOG", "value": MAILLOG},
        {"name": "MAILRELAY_MAILLOG_ECHO", "value": LOG_ECHO},
        {"name": "MAILRELAY_MAILLOG_MAX_BYTES", "value": str(MAILLOG_MAX_BYTES)},
    ]


def container(image: str, queue_volume: str, queue_dir: str) -> dict[str, Any]:
    probe = {
        "httpGet": {"path": "/", "port": PORT_NAME},
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [COMMAND],
        "env": [
            {"name": "POSTFIX_QUEUE_DIR", "value": queue_dir},
            {"name": "MAILRELAY_MAILLOG", "value": MAILLOG},
            {"name": "MAILRELAY_METRICS_LISTEN", "value": f":{PORT}"},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": queue_volume, "mountPath": queue_dir, "readOnly": True},
            {"name": LOG_VOLUME, "mountPath": LOG_DIR, "readOnly": True},
        ],
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 90},
        "livenessProbe": probe,
        "resources": RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
        },
    }
