"""HTTP(S) to the API server with the standard library: a small keep-alive pool and line streams.

http.client rather than urllib3 or aiohttp because the operator's passes run in worker threads and
need little: requests with a timeout, connections kept open between them (a TLS handshake per
request would double the API server's CPU per pass), and watch streams read line by line.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from mailrelay.kube.config import Credentials

# A reused keep-alive connection the server closed meanwhile fails like this before any answer;
# the request never reached the server, so it is sent once more on a fresh connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Response:
    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status, self.body, self.content_type = status, body, content_type


class Transport:
    def __init__(self, credentials: Credentials, pool_size: int = 32) -> None:
        self.credentials = credentials
        parsed = urllib.parse.urlsplit(credentials.server)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or (443 if self.https else 80)
        self.base = parsed.path.rstrip("/")
        self.pool_size = pool_size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.credentials.ssl_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "mailrelay-operator"}
        if content_type:
            headers["Content-Type"] = content_type
        authorization = self.credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 20.0,
        accept: str = "application/json",
    ) -> Response:
        """One request; OSError (and http.client's errors) when there is no answer."""
        response = self._once(method, path, body, content_type, timeout, accept)
        if response.status == 401:  # a rotated or expired token: read it again, once
            self.credentials.expire()
            response = self._once(method, path, body, content_type, timeout, accept)
        return response

    def _once(
        self, method: str, path: str, body: bytes | None, content_type: str | None, timeout: float, accept: str
    ) -> Response:
        for attempt in (0, 1):
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            reused = connection is not None
            connection = connection or self._connect(timeout)
            try:
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
                connection.request(method, self.base + path, body=body, headers=self._headers(accept, content_type))
                answer = connection.getresponse()
                data = answer.read()
            except _STALE:
                connection.close()
                if reused and attempt == 0:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                connection.close()
                raise
            if answer.will_close:
                connection.close()
            else:
                with self._lock:
                    if len(self._idle) < self.pool_size:
                        self._idle.append(connection)
                        connection = None
                if connection is not None:
                    connection.close()
            return Response(answer.status, data, answer.getheader("Content-Type") or "")
        raise AssertionError("unreachable")

    @contextmanager
    def stream(self, path: str, timeout: float) -> Iterator[tuple[int, Iterator[bytes]]]:
        """(status, lines) of a long GET on a connection of its own (a watch), closed on exit."""
        connection = self._connect(timeout)
        try:
            connection.request("GET", self.base + path, headers=self._headers("application/json", None))
            answer = connection.getresponse()

            def lines() -> Iterator[bytes]:
                while True:
                    line = answer.readline()
                    if not line:
                        return
                    yield line

            yield answer.status, lines()
        finally:
            try:
                if connection.sock is not None:
                    connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
