"""The milter protocol (version 6, as Postfix speaks it), just what the gate needs.

Postfix's smtpd connects once per SMTP session. Each packet is a 4-byte length, a command byte and
its data. The gate asks Postfix to skip the connect, HELO, DATA, body and unknown-command steps, so
it hears the macros, MAIL, RCPT, each header, the end of the headers and the end of the message. It
answers `continue` to all but the end of the message, where `policy.Gate` decides: continue, or a
reply code with text. It changes nothing in a message (no modification actions are negotiated). An
error in a session ends that session only; Postfix then applies milter_default_action (tempfail).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading

from .policy import Gate, Message

log = logging.getLogger("mailrelay.gate")
VERSION = 6
# Steps the gate does not need: no connect, HELO, body, unknown command or DATA step is sent.
NO_CONNECT, NO_HELO, NO_BODY, NO_UNKNOWN, NO_DATA = 0x1, 0x2, 0x10, 0x100, 0x200
WANTED = NO_CONNECT | NO_HELO | NO_BODY | NO_UNKNOWN | NO_DATA
MAX_PACKET = 1 << 20  # Postfix's largest is a header (bounded by header_size_limit, 102400) or a body chunk
NO_REPLY = {b"D", b"A", b"Q", b"K"}  # macros, abort, quit, quit and reuse: no answer expected
IDLE_TIMEOUT = 600.0


class ProtocolError(Exception):
    pass


def read_packet(stream: socket.socket) -> tuple[bytes, bytes] | None:
    """(command, data), or None at a clean end of the connection."""
    head = _read(stream, 4, allow_eof=True)
    if head is None:
        return None
    (length,) = struct.unpack("!I", head)
    if not 1 <= length <= MAX_PACKET:
        raise ProtocolError(f"a packet of {length} bytes")
    body = _read(stream, length)
    assert body is not None
    return body[:1], body[1:]


def _read(stream: socket.socket, size: int, allow_eof: bool = False) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = stream.recv(size - got)
        if not chunk:
            if allow_eof and got == 0:
                return None
            raise ProtocolError("the connection ended inside a packet")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def strings(data: bytes) -> list[str]:
    """NUL-terminated strings, as Postfix sends them."""
    return [part.decode("utf-8", "replace") for part in data.split(b"\0")[:-1]]


def negotiate(data: bytes) -> bytes:
    """Our answer to Postfix's options: version 6, no modification actions, skip what we can."""
    if len(data) < 12:
        raise ProtocolError("a short option negotiation")
    version, _actions, offered = struct.unpack("!III", data[:12])
    if version < 2:
        raise ProtocolError(f"milter protocol version {version}")
    return packet(b"O", struct.pack("!III", VERSION, 0, WANTED & offered))


def reply(text: str) -> bytes:
    """A reply code and text (SMFIR_REPLYCODE); `%` is doubled, as Postfix formats it."""
    return packet(b"y", text.replace("%", "%%").encode("utf-8", "replace")[:1000] + b"\0")


class Session:
    """One SMTP session's worth of milter conversation."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.macros: dict[str, str] = {}
        self.message = Message()

    def handle(self, command: bytes, data: bytes) -> bytes | None:
        """The answer to one packet (None: no answer is expected)."""
        if command in (b"O", b"D", b"A", b"K", b"Q"):
            return self._session_packet(command, data)
        return self._message_packet(command, data)

    def _session_packet(self, command: bytes, data: bytes) -> bytes | None:
        """Options, macros, abort, reset and quit: about the session, never answered but O."""
        if command == b"O":
            return negotiate(data)
        if command == b"D":
            values = strings(data[1:])
            self.macros.update(zip(values[::2], values[1::2], strict=False))
        elif command in (b"A", b"K"):  # the message was aborted, or the connection is reused
            self.message = Message()
            if command == b"K":
                self.macros = {}
        return None

    def _message_packet(self, command: bytes, data: bytes) -> bytes:
        """Sender, recipients, headers and the end of a message: continue, or the gate's refusal at the end."""
        if command == b"M":
            args = strings(data)
            self.message = Message(self.macros.get("{auth_authen}", ""), args[0].strip("<>") if args else "")
        elif command == b"R":
            self.message.recipients += 1
        elif command == b"L":
            parts = strings(data)
            if len(parts) == 2:
                self.message.headers.append((parts[0], parts[1]))
        elif command == b"E":
            refusal = self.gate.decide(self.message)
            login = self.message.login or "no login"
            self.message = Message()
            if refusal is not None:
                log.info("refused a message of %s: %s", login, refusal)
                return reply(refusal)
        return packet(b"c")


class _Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        self.request.settimeout(IDLE_TIMEOUT)
        session = Session(self.server.gate)
        try:
            while (found := read_packet(self.request)) is not None:
                command, data = found
                answer = session.handle(command, data)
                if answer is not None:
                    self.request.sendall(answer)
                if command == b"Q":
                    return
        except (OSError, ProtocolError, ValueError, struct.error) as exc:
            log.warning("milter session ended: %s", exc)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gate: Gate) -> None:
        self.gate = gate
        self.stopping = threading.Event()
        super().__init__(address, _Handler)
