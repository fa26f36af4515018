"""`python3 -m mailrelay.gate milter LISTEN TENANTS LINGER` | `logins build|watch`.

milter: serve Postfix's smtpd on LISTEN (host:port) with the tenant list in TENANTS (tenants.json
from the ConfigMap mount, read again whenever it changes) until SIGTERM, then LINGER seconds more
(Postfix's preStop drain still accepts mail that long). logins: see logins.py; its paths come from
the same variables as the entrypoint's.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import logins, tenants
from .milter import Server
from .policy import Gate


class Watched:
    """The tenant document, read again when the file changes (the kubelet swaps it whole)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._document = tenants.Document()
        self._lock = threading.Lock()

    def __call__(self) -> tenants.Document:
        with self._lock:
            try:
                status = self.path.stat()
                stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
                if stamp != self._stamp:
                    self._document, self._stamp = tenants.load(self.path.read_text()), stamp
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logging.warning("tenant list %s unreadable, keeping the last one: %s", self.path, exc)
            return self._document


def milter(listen: str, path: str, linger: float) -> int:
    host, _, port = listen.rpartition(":")
    server = Server((host, int(port)), Gate(Watched(Path(path))))

    def stop_later() -> None:
        time.sleep(linger)
        server.shutdown()

    stopping = threading.Thread(target=stop_later, daemon=True)

    def terminate(signum: int, frame: object) -> None:
        if stopping.ident is None:
            stopping.start()

    signal.signal(signal.SIGTERM, terminate)
    logging.info("serving Postfix on %s with the tenants in %s", listen, path)
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    logging.info("stopped")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="mailrelay-gate: %(message)s")
    if len(argv) == 4 and argv[0] == "milter":
        return milter(argv[1], argv[2], float(argv[3]))
    if len(argv) == 2 and argv[0] == "logins" and argv[1] in ("build", "watch"):
        paths = (
            Path(os.environ.get("MAILRELAY_CONFIG_SOURCE", "/etc/mailrelay/config")),
            Path(os.environ.get("POSTFIX_CONFIG_DIR", "/run/mailrelay/postfix")),
            Path(os.environ.get("MAILRELAY_EGRESS_DIR", "/etc/mailrelay/egress")),
            os.environ.get("MAILRELAY_HANDOFF_TARGET", ""),
        )
        if argv[1] == "watch":
            logins.watch(*paths)
            return 0
        print(f"mailrelay-logins: {logins.build(*paths)} tenant login(s) in use", flush=True)
        return 0
    print("usage: python3 -m mailrelay.gate milter HOST:PORT TENANTS.json LINGER | logins build|watch", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
