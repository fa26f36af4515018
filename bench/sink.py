"""An SMTP sink in its own process (so it does not share a GIL with the load generator).

    python bench/sink.py PORT OUTFILE

Appends one line per message: envelope sender, Message-ID, From header, and "signed" if it carries a
DKIM-Signature header, else "-" (tab-separated).
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

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


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(Recorder(path), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
