"""The `ours_oauth2` mail configuration's extra parts: the XOAUTH2 relay and a smarthost that wants it.

Postfix (rendered for `authType: OAuth2`) delivers to the image's XOAUTH2 relay (mailrelay.relayd,
started by its own wrapper script with the rendered xoauth2.json), which relays to bench/sink.py in
its XOAUTH2 mode: STARTTLS with a certificate of a loopback CA, then AUTH XOAUTH2 checked against the
token. The token document is the one the operator's keeper writes (keeper.token_document); obtaining
and refreshing it is not a per-message cost, so no token endpoint runs here.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

from mailrelay import scripts
from mailrelay.oauth.client import TokenResponse
from mailrelay.oauth.keeper import token_document
from mailrelay.render.relay import config_files
from mailrelay.render.xoauth2 import CONFIG_FILE

from support.loopback_ca import LoopbackCA
from support.paths import ROOT
from support.postfix_harness import HarnessPostfix
from support.smtp_sink import free_port

USER = "relay@bench.example.com"


def oauth2_spec() -> dict[str, object]:
    """spec.relay additions: the token URL is never called (the bench writes the token itself)."""
    return {
        "tls": "Encrypt",
        "authType": "OAuth2",
        "oauth2": {
            "provider": "Custom",
            "tokenURL": "https://127.0.0.1/tenant-1/oauth2/v2.0/token",
            "clientID": "client-1",
            "grant": "ClientCredentials",
            "secretRef": {"name": "oauth"},
            "username": USER,
        },
    }


class Hop:
    """One run's CA, token file and XOAUTH2 relay process."""

    def __init__(self, workdir: Path):
        self.folder = workdir / f"xoauth2-{secrets.token_hex(3)}"
        self.ca = LoopbackCA(self.folder / "ca")
        self.token_file = self.folder / "token"
        now = time.time()
        self.token_file.write_text(token_document(TokenResponse("tok-" + secrets.token_urlsafe(24), 3600), now))
        self.token_file.chmod(0o444)  # the relay runs as whoever runs the bench; the pod's mode
        self.process: subprocess.Popen[bytes] | None = None

    def sink_args(self) -> list[str]:
        """bench/sink.py's XOAUTH2 mode: certificate, key, the token document and the user name."""
        return ["--xoauth2", str(self.ca.cert_file), str(self.ca.key_file), str(self.token_file), USER]

    def start(self, instance: HarnessPostfix) -> int:
        """Start the relay with the rendered xoauth2.json (this machine's port and token path) and point
        Postfix at it; its pid, for the relay's CPU account."""
        port = free_port()
        config = json.loads(config_files(instance.relay.spec)[CONFIG_FILE])
        config.update(listen=f"127.0.0.1:{port}", tokenFile=str(self.token_file), lingerSeconds=0)
        path = self.folder / CONFIG_FILE
        path.write_text(json.dumps(config))
        with (self.folder / "xoauth2.out").open("wb") as out:
            self.process = subprocess.Popen(
                [*scripts.command("xoauth2.sh"), str(path)],
                env={
                    **os.environ,
                    "MAILRELAY_PYTHON_LIB": str(ROOT / "operator"),
                    "SSL_CERT_FILE": str(self.ca.ca_file),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        instance.extra_env["MAILRELAY_XOAUTH2_LISTEN"] = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:  # listening before Postfix's first delivery, which would otherwise wait for a retry
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = (self.folder / "xoauth2.out").read_text()
                    raise RuntimeError(f"the XOAUTH2 relay did not start: {output}") from None
                time.sleep(0.05)
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
