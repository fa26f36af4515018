"""OAuth2 smarthosts end to end on real Postfix: the image's entrypoint, the XOAUTH2 relay started by the
image's own wrapper script, the operator's TokenKeeper, the token endpoint and XOAUTH2 smarthost doubles.

The kubelet's part is played by `Kubelet.sync()`: it copies the token Secret's `token` key to the file
the relay reads, as the Secret volume would. Clients send from 127.0.0.5, inside allowedNetworks.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailrelay import scripts
from mailrelay.api import conditions as cond
from mailrelay.api.names import SECRET_GRANT_ANNOTATION
from mailrelay.controller import delivery
from mailrelay.controller.oauth import TokenKeeper, Tokens
from mailrelay.oauth import client
from mailrelay.render.relay import config_files
from mailrelay.render.xoauth2 import CONFIG_FILE

from support.loopback_ca import LoopbackCA
from support.mail import message, send, wait_for_log
from support.oauth_doubles import SecretsApi, TokenEndpoint, XOAuth2Smarthost
from support.paths import ROOT
from support.samples import make_relay
from support.smtp_sink import free_port

USER = "relay@apps.example.com"
NS = "apps"
GRANT = {SECRET_GRANT_ANNOTATION: "relay"}  # the user's Secret names the relay that may use it


@dataclass
class Rig:
    ca: LoopbackCA
    endpoint: TokenEndpoint
    smarthost: XOAuth2Smarthost
    api: SecretsApi
    keeper: TokenKeeper
    relay: Any
    postfix: Any
    token_file: Path
    relayd: subprocess.Popen[bytes]
    relayd_log: Path
    trace: Path | None
    offset: list[float]

    def keep(self) -> Tokens:
        """One pass of the operator's keeper, then the kubelet's copy of the Secret into the volume."""
        tokens = self.keeper.keep(self.api, self.relay, {})
        secret = self.api.get("Secret", NS, "mailrelay-relay-oauth2-token") or {}
        raw = (secret.get("data") or {}).get("token")
        if raw:
            new = self.token_file.with_suffix(".new")
            new.write_bytes(base64.b64decode(raw))
            new.chmod(0o444)
            new.replace(self.token_file)  # the kubelet swaps a Secret volume's files atomically too
        return tokens

    def user_secret(self, **values: str) -> None:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        self.api.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "oauth", "namespace": NS, "annotations": GRANT},
                "data": data,
            }
        )


def stop_relayd(rig: Rig) -> None:
    if rig.relayd.poll() is None:
        os.killpg(rig.relayd.pid, signal.SIGTERM)
        rig.relayd.wait(timeout=20)


def oauth_spec(endpoint: TokenEndpoint, smarthost: XOAuth2Smarthost, grant: str) -> dict[str, Any]:
    return {
        "mailFromFQDN": "apps.example.com",
        "allowedNetworks": ["127.0.0.4/30"],
        "relay": {
            "host": "127.0.0.1",
            "port": smarthost.port,
            "tls": "Encrypt",
            "authType": "OAuth2",
            "oauth2": endpoint.relay_oauth2(grant, USER),
        },
    }


@pytest.fixture
def oauth_rig(start_postfix: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    started: list[Rig] = []
    base = Path(str(tmp_path))

    def build(grant: str = "ClientCredentials", rotate: bool = False, trace: bool = False) -> Rig:
        ca = LoopbackCA(base / "ca")
        offset = [0.0]
        endpoint = TokenEndpoint(ca, rotate=rotate)
        smarthost = XOAuth2Smarthost(endpoint, ca, USER).start()
        relay = make_relay(oauth_spec(endpoint, smarthost, grant))
        api = SecretsApi()
        keeper = TokenKeeper(
            fetch=lambda request: client.fetch(request, context=ca.client_context()),
            clock=lambda: time.time() + offset[0],
        )
        port = free_port()
        token_file = base / "token"
        config = json.loads(config_files(relay.spec)[CONFIG_FILE])  # the ConfigMap's file, with this machine's paths
        config.update(listen=f"127.0.0.1:{port}", tokenFile=str(token_file), lingerSeconds=0)
        (base / CONFIG_FILE).write_text(json.dumps(config))
        tracer = ["strace", "-f", "-qq", "-v", "-s", "65536", "-e", "trace=execve"] if trace else []
        trace_file = base / "execs.trace" if trace else None
        relayd_log = base / "xoauth2.out"
        with relayd_log.open("wb") as out:
            relayd = subprocess.Popen(
                [
                    *tracer,
                    *(["-o", str(base / "relayd.trace")] if trace else []),
                    *scripts.command("xoauth2.sh"),
                    str(base / CONFIG_FILE),
                ],
                env={**os.environ, "MAILRELAY_PYTHON_LIB": str(ROOT / "operator"), "SSL_CERT_FILE": str(ca.ca_file)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its tracer and itself stop together (stop_relayd)
            )
        instance = start_postfix(relay, run=False)
        instance.extra_env["MAILRELAY_XOAUTH2_LISTEN"] = f"127.0.0.1:{port}"
        if trace and trace_file is not None:
            instance.wrapper = [*tracer, "-o", str(trace_file)]
        rig = Rig(
            ca, endpoint, smarthost, api, keeper, relay, instance, token_file, relayd, relayd_log, trace_file, offset
        )
        started.append(rig)
        return rig

    yield build
    for rig in started:
        stop_relayd(rig)
        rig.smarthost.stop()
        rig.endpoint.stop()


def test_delivery_with_the_client_credentials_grant(oauth_rig: Callable[..., Rig]) -> None:
    rig = oauth_rig()
    rig.user_secret(**{"client-secret": "client-secret-1"})
    rig.keep()
    rig.postfix.start()
    send(rig.postfix, "app@pod-1", message("app@pod-1"))
    [got] = rig.smarthost.wait_for(1)
    assert got.mail_from == "app@apps.example.com" and got.header("From") == "app@apps.example.com"
    assert [(login.user, login.accepted) for login in rig.smarthost.logins] == [(USER, True)]
    wait_for_log(rig.postfix, "status=sent")


def test_delivery_with_a_rotating_refresh_token_across_a_refresh_before_expiry(oauth_rig: Callable[..., Rig]) -> None:
    """Mail keeps flowing while the keeper replaces the token at half its life; nothing is lost or doubled."""
    rig = oauth_rig(grant="RefreshToken", rotate=True)
    rig.user_secret(**{"refresh-token": "refresh-1"})
    rig.keep()
    rig.postfix.start()
    stop = threading.Event()
    sent: list[str] = []

    def steady() -> None:
        while not stop.is_set() and len(sent) < 40:
            subject = f"steady-{len(sent)}"
            send(rig.postfix, "app@pod-1", message("app@pod-1", **{"X-Seq": subject}))
            sent.append(subject)
            time.sleep(0.1)

    sender = threading.Thread(target=steady)
    sender.start()
    rig.smarthost.wait_for(5)
    first = rig.smarthost.logins[0].token
    rig.offset[0] = 1801  # half the token's life later, by the keeper's clock
    rig.keep()
    assert rig.endpoint.valid(first)  # replaced before it expired
    time.sleep(2)
    stop.set()
    sender.join()
    got = rig.smarthost.wait_for(len(sent))
    time.sleep(2)  # a duplicate would have arrived by now
    subjects = [str(r.header("X-Seq")) for r in rig.smarthost.received]
    assert sorted(subjects) == sorted(sent)  # every message once
    tokens = {login.token for login in rig.smarthost.logins}
    assert len(tokens) == 2 and all(login.accepted for login in rig.smarthost.logins)
    assert rig.endpoint.grants("refresh_token") == 2
    saved = rig.api.get("Secret", NS, "oauth")
    assert (
        saved is not None and base64.b64decode(saved["data"]["refresh-token"]).decode() in rig.endpoint.refresh_tokens
    )
    assert "status=deferred" not in rig.postfix.log() and len(got) == len(sent)


def test_many_concurrent_deliveries_share_one_token(oauth_rig: Callable[..., Rig]) -> None:
    rig = oauth_rig()
    rig.user_secret(**{"client-secret": "client-secret-1"})
    rig.keep()
    rig.postfix.start()

    def burst(n: int) -> None:
        with smtplib.SMTP(rig.postfix.listen, rig.postfix.port, source_address=("127.0.0.5", 0), timeout=30) as smtp:
            for i in range(10):
                smtp.send_message(message("app@pod-1", **{"X-Seq": f"burst-{n}-{i}"}), "app@pod-1", ["ops@example.org"])

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rig.smarthost.wait_for(60)
    assert len({login.token for login in rig.smarthost.logins}) == 1
    assert len(rig.smarthost.logins) > 1  # several sessions at once, all with the one token
    assert rig.endpoint.grants("client_credentials") == 1


def test_a_revoked_token_defers_mail_then_it_leaves_once_after_the_fix(oauth_rig: Callable[..., Rig]) -> None:
    rig = oauth_rig()
    rig.user_secret(**{"client-secret": "client-secret-1"})
    rig.keep()
    rig.postfix.start()
    rig.endpoint.revoke_all()  # the admin withdrew the app's consent: the token and the secret stop working
    send(rig.postfix, "app@pod-1", message("app@pod-1", **{"X-Seq": "waits"}))
    log = wait_for_log(rig.postfix, "status=deferred")
    [reason] = delivery.deferral_reasons(log)[-1:]
    assert delivery.classify(reason) == cond.AUTH_FAILED and "authentication failed" in reason
    assert rig.postfix.queued() == 1 and rig.smarthost.received == []
    rig.offset[0] = 3700  # the last token has expired by the keeper's clock, and refreshing it is refused
    tokens = rig.keep()
    assert tokens.failing and "invalid_client" in tokens.failing
    health = tokens.delivering(None, {"queue": {"deferred": 1}})
    assert health is not None and (health.status, health.reason) == ("False", cond.TOKEN_REFRESH_FAILED)

    rig.endpoint.client_secrets = {"client-secret-2"}  # a new secret, put in the user's Secret
    rig.user_secret(**{"client-secret": "client-secret-2"})
    assert not rig.keep().failing
    rig.postfix.postfix("flush")  # Postfix's next retry, without waiting for its backoff
    [got] = rig.smarthost.wait_for(1)
    time.sleep(3)  # a second copy would have arrived by now
    assert len(rig.smarthost.received) == 1 and got.header("X-Seq") == "waits"
    assert rig.postfix.queued() == 0


def test_no_token_or_secret_in_any_argv_environment_log_or_configmap(oauth_rig: Callable[..., Rig]) -> None:
    rig = oauth_rig(grant="RefreshToken", rotate=True, trace=True)
    rig.user_secret(**{"refresh-token": "refresh-1", "client-secret": "client-secret-1"})
    events = rig.keep().events
    rig.postfix.start()
    send(rig.postfix, "app@pod-1", message("app@pod-1"))
    rig.smarthost.wait_for(1)
    rig.endpoint.revoke_all()
    send(rig.postfix, "app@pod-1", message("app@pod-1"))
    wait_for_log(rig.postfix, "status=deferred")
    rig.offset[0] = 4000
    tokens = rig.keep()
    rig.postfix.stop()
    stop_relayd(rig)
    secrets = {"refresh-1", "client-secret-1", *rig.endpoint.issued, *rig.endpoint.refresh_tokens}
    secrets |= {
        base64.b64encode(f"user={USER}\x01auth=Bearer {t}\x01\x01".encode()).decode() for t in rig.endpoint.issued
    }
    assert rig.trace is not None
    traces = rig.trace.read_text() + (rig.trace.parent / "relayd.trace").read_text()
    assert traces.count("execve(") > 20  # the entrypoint's commands, Postfix's daemons and the relay
    shown = {
        "exec argv and environments": traces,
        "Postfix's log": rig.postfix.log() + rig.postfix.output.read_text(),
        "the relay's log": rig.relayd_log.read_text(),
        "the ConfigMap": json.dumps(config_files(rig.relay.spec)),
        "events and status": json.dumps([events, tokens.events, tokens.status, tokens.conditions, tokens.failing]),
    }
    leaks = {where: [s for s in secrets if s in text] for where, text in shown.items()}
    assert leaks == {where: [] for where in shown}


def test_local_mode_keeps_the_token_and_runs_the_relay_itself(
    start_postfix: Callable[..., Any], tmp_path: Path
) -> None:
    """`mailrelay-operator local`'s OAuth2 part (mailrelay.local.oauth) with the Secret from the -f file."""
    from mailrelay.local.oauth import LocalXOAuth2

    ca = LoopbackCA(tmp_path / "ca")
    endpoint = TokenEndpoint(ca, rotate=True)
    smarthost = XOAuth2Smarthost(endpoint, ca, USER).start()
    relay = make_relay(oauth_spec(endpoint, smarthost, "RefreshToken"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "oauth"},
        "stringData": {"refresh-token": "refresh-1"},
    }
    port = free_port()
    local = LocalXOAuth2(
        relay,
        tmp_path,
        secret,
        port=port,
        fetch=lambda request: client.fetch(request, context=ca.client_context()),
        env={"SSL_CERT_FILE": str(ca.ca_file)},
    )
    try:
        local.start()
        instance = start_postfix(relay, run=False)
        instance.extra_env["MAILRELAY_XOAUTH2_LISTEN"] = f"127.0.0.1:{port}"
        instance.start()
        send(instance, "app@pod-1", message("app@pod-1"))
        smarthost.wait_for(1)
        assert smarthost.logins and all(login.accepted for login in smarthost.logins)
        assert (tmp_path / "oauth2-token").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "oauth2-refresh-token").read_text().strip() in endpoint.refresh_tokens
    finally:
        local.stop()
        smarthost.stop()
        endpoint.stop()
