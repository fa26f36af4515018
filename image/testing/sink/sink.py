#!/usr/bin/env python3
"""An SMTP sink for the node's tests: a smarthost that records what it is given.

Listens on port 25 (STARTTLS offered) and 587 (STARTTLS required before AUTH). AUTH PLAIN and LOGIN are
offered after STARTTLS; with SINK_USER and SINK_PASSWORD set, only that login is accepted (and required on
587). Every message is appended as one JSON line to /var/spool/sink/messages.jsonl and printed: envelope
sender and recipients, the client's address, whether TLS and which login were used, the headers, and the
DKIM verdict (dkimpy), with public keys read from SINK_DKIM_KEYS (a folder of files named
`<selector>._domainkey.<domain>` holding the TXT record) instead of DNS, which a test cluster does not have.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SPOOL = Path(os.environ.get("SINK_SPOOL", "/var/spool/sink"))
KEYS = Path(os.environ.get("SINK_DKIM_KEYS", "/etc/sink/dkim"))
USER, PASSWORD = os.environ.get("SINK_USER", ""), os.environ.get("SINK_PASSWORD", "")


def tls_context() -> ssl.SSLContext:
    folder = Path(tempfile.mkdtemp(prefix="sink-tls-"))
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=sink",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def dkim_verdict(data: bytes) -> str:
    if b"dkim-signature:" not in data.lower():
        return "none"
    import dkim

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        path = KEYS / name.decode().rstrip(".")
        return path.read_bytes() if path.is_file() else b""

    try:
        return "pass" if dkim.verify(data, dnsfunc=dnsfunc) else "fail"
    except Exception as error:  # a malformed signature is a verdict, not a crash
        return f"error: {error}"


class Recorder:
    def __init__(self, port: int) -> None:
        self.port = port

    async def handle_DATA(self, server, session, envelope) -> str:
        data = envelope.original_content or envelope.content
        message = message_from_bytes(data, policy=compat32)
        record = {
            "time": time.time(),
            "port": self.port,
            "peer": session.peer[0],
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "login": (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[name, str(value)] for name, value in message.items()],
            "dkim": dkim_verdict(data),
            "size": len(data),
        }
        line = json.dumps(record)
        with (SPOOL / "messages.jsonl").open("a") as spool:
            spool.write(line + "\n")
        print(line, flush=True)
        return "250 OK recorded"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    if USER and (auth_data.login.decode(), auth_data.password.decode()) != (USER, PASSWORD):
        return AuthResult(success=False, handled=False)
    return AuthResult(success=True, auth_data=auth_data)


def main() -> int:
    SPOOL.mkdir(parents=True, exist_ok=True)
    context = tls_context()
    controllers = []
    for port, require_auth in ((25, False), (587, True)):
        controller = Controller(
            Recorder(port),
            hostname="0.0.0.0",
            port=port,
            tls_context=context,
            require_starttls=require_auth,
            auth_require_tls=True,
            auth_required=require_auth and bool(USER),
            authenticator=authenticator,
            server_hostname="sink",
            ready_timeout=30,
        )
        controller.start()
        controllers.append(controller)
    print("sink: listening on 25 and 587", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for controller in controllers:
            controller.stop()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
