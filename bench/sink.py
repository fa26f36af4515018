"""An SMTP sink in its own process (so it does not share a GIL with the load generator).

    python bench/sink.py PORT OUTFILE [--xoauth2 CERT KEY TOKENFILE USER]

Appends one line per message: envelope sender, Message-ID, From header, and "signed" if it carries a
DKIM-Signature header, else "-" (tab-separated). With --xoauth2 it is a smarthost like Microsoft 365's:
STARTTLS required, then AUTH XOAUTH2 with exactly USER and the token in TOKENFILE (the keeper's JSON
document), else 535.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

_HEADER = re.compile(rb"^(Message-ID|From|DKIM-Signature):\s*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


class Recorder:
    def __init__(self, path: Path):
        self.out = path.open("a", buffering=1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        head = envelope.content.split(b"\r\n\r\n", 1)[0]
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in _HEADER.findall(head)}
        with self.lock:
            signed = "signed" if "dkim-signature" in headers else "-"
            self.out.write(
                f"{envelope.mail_from}\t{headers.get('message-id', '')}\t{headers.get('from', '')}\t{signed}\n"
            )
        return "250 OK"


class XOAuth2Recorder(Recorder):
    def __init__(self, path: Path, user: str, token: str):
        super().__init__(path)
        self.expected = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        if len(args) > 1 and args[1] == self.expected:
            return AuthResult(success=True, handled=False)
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


def main() -> None:
    # aiosmtpd sets its deprecated login_data itself after every successful AUTH: a log line per session
    logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    handler: Recorder = Recorder(path)
    tls: dict[str, Any] = {}
    if sys.argv[3:4] == ["--xoauth2"]:
        cert, key, token_file, user = sys.argv[4:8]
        handler = XOAuth2Recorder(path, user, json.loads(Path(token_file).read_text())["accessToken"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        tls = {"tls_context": context, "require_starttls": True, "auth_required": True, "auth_require_tls": True}
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10, **tls)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
