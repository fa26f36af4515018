"""A TCP proxy on loopback that can be cut like a network split: bytes stop flowing both ways.

Cut is a black hole, not a refusal: connections stay open and new ones are accepted, but nothing
reaches the other side, so a client sees what a partition looks like (timeouts), not a clean
error. `heal()` lets new connections through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def heal(self) -> None:
        """New connections flow again; the ones opened during the split stay dead, as after a real one."""
        with self._lock:
            stale, self._sockets = self._sockets, []
        self._cut.clear()
        for sock in stale:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self.heal()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            cut_at_start = self._cut.is_set()
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, cut_at_start), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, dead: bool) -> None:
        """Forward until either side closes; once cut, swallow everything (this connection stays dead)."""
        try:
            while data := source.recv(65536):
                if dead or self._cut.is_set():
                    dead = True
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not dead:
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
