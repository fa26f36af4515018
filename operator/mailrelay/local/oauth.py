"""Local mode's OAuth2: the XOAUTH2 relay process and a thread that keeps its access token fresh.

The same relay program the pod runs (mailrelay.relayd, from the rendered xoauth2.json with this
machine's paths) and the operator's decisions (mailrelay.oauth.keeper), with the token in a
root-only file of the workdir instead of a Secret. A refresh token the provider rotates is kept in
memory and in `oauth2-refresh-token` in the workdir (root only); the -f file is not rewritten.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailrelay.api.secret import OAuth2Credentials, oauth2_credentials
from mailrelay.api.spec import MailRelay
from mailrelay.local import files
from mailrelay.oauth import client, keeper
from mailrelay.render.relay import config_files
from mailrelay.render.xoauth2 import CONFIG_FILE

Fetch = Callable[[client.TokenRequest], client.TokenResponse]


def _private(path: Path, text: str) -> None:
    """Written whole under a new name, then renamed (never through a link): the relay never reads half a token."""
    files.write(path, text.encode(), 0o600)


class LocalXOAuth2:
    def __init__(
        self,
        relay: MailRelay,
        workdir: Path,
        secret: dict[str, Any],
        *,
        port: int,
        fetch: Fetch = client.fetch,
        clock: Callable[[], float] = time.time,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
    ):
        assert relay.spec.relay is not None and relay.spec.relay.oauth2 is not None
        self.oauth2 = relay.spec.relay.oauth2
        self.credentials: OAuth2Credentials = oauth2_credentials(secret, self.oauth2.grant)
        self.relay, self.workdir, self.port = relay, workdir, port
        self.fetch, self.clock, self.env, self.wrapper = fetch, clock, env or {}, wrapper or []
        self.token_file = workdir / "oauth2-token"
        self.config_file = workdir / CONFIG_FILE
        self.output = workdir / "xoauth2.out"
        self.state = keeper.State()
        self.version = "local/0/" + keeper.source_version(self.oauth2, {}).rsplit("/", 1)[1]
        self.process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_once(self) -> float:
        """Refresh when due; returns the seconds until the next look."""
        now = self.clock()
        decision = keeper.decide(self.state, self.version, now)
        if not decision.refresh:
            return decision.next_check
        try:
            response = self.fetch(keeper.request(self.oauth2, self.credentials))
        except client.TokenError as exc:
            failure = keeper.failure_after(self.state, self.version, str(exc), exc.refused, now)
            self.state = keeper.State(**{**self.state.__dict__, "failure": failure})
            print(f"mailrelay-operator local: access token not refreshed: {exc}", file=sys.stderr, flush=True)
            return failure.retry_at - now
        if response.refresh_token and response.refresh_token != self.credentials.refresh_token:
            self.credentials = OAuth2Credentials(self.credentials.client_secret, response.refresh_token)
            _private(self.workdir / "oauth2-refresh-token", response.refresh_token + "\n")
            print("mailrelay-operator local: the provider rotated the refresh token; kept in the workdir", flush=True)
        _private(self.token_file, keeper.token_document(response, now))
        notes = keeper.annotations_after_success(response, self.version, now, self.state)
        self.state = keeper.State.of({"metadata": {"annotations": {k: v for k, v in notes.items() if v}}})
        return keeper.decide(self.state, self.version, now).next_check

    def _loop(self) -> None:
        while not self._stop.wait(max(1.0, min(self.refresh_once(), 60.0))):
            pass

    def start(self) -> None:
        rendered = json.loads(config_files(self.relay.spec)[CONFIG_FILE])
        rendered.update(listen=f"127.0.0.1:{self.port}", tokenFile=str(self.token_file), lingerSeconds=0)
        files.write(self.config_file, (json.dumps(rendered, indent=2) + "\n").encode())
        self.refresh_once()
        self._thread = threading.Thread(target=self._loop, name="oauth2-keeper", daemon=True)
        self._thread.start()
        with files.fresh(self.output) as out:
            self.process = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "mailrelay.relayd", str(self.config_file)],
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import socket

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the XOAUTH2 relay did not start:\n{self.output.read_text()}")

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
