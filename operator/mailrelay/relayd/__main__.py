"""`python3 -m mailrelay.relayd CONFIG`: serve Postfix on loopback until SIGTERM.

CONFIG is the JSON file the operator renders into the relay's ConfigMap (mailrelay.render.xoauth2):
where to listen, the smarthost, the SMTP user name and the token file. None of it is secret.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .server import Server
from .upstream import Smarthost


def load(path: Path) -> tuple[tuple[str, int], Smarthost, Path, float]:
    config: dict[str, Any] = json.loads(path.read_text())
    host, _, port = str(config["listen"]).rpartition(":")
    timeouts = {key: float(value) for key, value in (config.get("timeouts") or {}).items()}
    smarthost = Smarthost(
        host=str(config["host"]),
        port=int(config["port"]),
        tls=str(config["tls"]),
        username=str(config["username"]),
        helo=str(config["helo"]),
        **timeouts,
    )
    return (host, int(port)), smarthost, Path(config["tokenFile"]), float(config.get("lingerSeconds", 0))


def stop_later(server: Server, linger: float) -> None:
    """On SIGTERM: keep serving while Postfix's preStop drain may still deliver through us (it
    delivers for `linger` seconds, then hands the rest to the other replicas directly), then take no
    new session and let the open ones finish."""
    time.sleep(linger)
    server.shutdown()
    server.sessions.wait_idle(server.smarthost.data_timeout + server.smarthost.command_timeout)


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="mailrelay-xoauth2: %(message)s")
    if len(argv) != 1:
        print("usage: python3 -m mailrelay.relayd CONFIG.json", file=sys.stderr)
        return 2
    try:
        address, smarthost, token_file, linger = load(Path(argv[0]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"mailrelay-xoauth2: unusable configuration {argv[0]}: {exc!r}", file=sys.stderr)
        return 2
    server = Server(address, smarthost, token_file, time.time)
    stopping = threading.Thread(target=stop_later, args=(server, linger), daemon=True)

    def terminate(signum: int, frame: object) -> None:
        if stopping.ident is None:  # a second SIGTERM changes nothing
            stopping.start()

    signal.signal(signal.SIGTERM, terminate)
    logging.info(
        "relaying %s:%d to %s:%d (%s) as %s",
        *address,
        smarthost.host,
        smarthost.port,
        smarthost.tls,
        smarthost.username,
    )
    server.serve_forever(poll_interval=0.5)
    if stopping.ident is not None:
        stopping.join()
    server.server_close()
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
