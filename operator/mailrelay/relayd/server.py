"""The loopback SMTP server Postfix delivers to: one thread and one smarthost session per connection.

It speaks just what Postfix's smtp client needs, one command at a time (no PIPELINING, no
CHUNKING, so every reply is the answer to the one command before it): EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT. MAIL, RCPT and RSET go to the smarthost as written and its reply comes
back as sent; DATA is answered 354 only after the smarthost's 354, the message streams through
line by line, and the final reply is the smarthost's. Postfix therefore hears 250 for a message
only after the smarthost said 250, and keeps anything else queued (4xx) or bounces it (5xx) itself.
"""

from __future__ import annotations

import logging
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import token as tokens
from .upstream import Refusal, Reply, Session, Smarthost

log = logging.getLogger("mailrelay.relayd")
GREETING_NAME = "xoauth2.mailrelay.invalid"  # never Postfix's myhostname, which Postfix takes for a loop
MAX_LINE = 4096  # a command line; message lines are passed on whatever their length
IDLE_TIMEOUT = 300.0  # Postfix's own smtp timeouts are at most this long between commands
PASSED = {b"MAIL", b"RCPT", b"RSET"}


def format_reply(reply: Reply) -> bytes:
    """A (possibly multi-line) SMTP reply, as smtplib hands it over (lines joined by LF)."""
    code, text = reply
    lines = text.replace(b"\r", b"").split(b"\n") or [b""]
    out = [b"%d-%s\r\n" % (code, line) for line in lines[:-1]]
    return b"".join(out) + b"%d %s\r\n" % (code, lines[-1])


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(IDLE_TIMEOUT)
        self.session: Session | None = None
        self.delivered = 0
        self.server.sessions.acquire()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sessions.release()

    def say(self, reply: Reply) -> None:
        self.wfile.write(format_reply(reply))
        self.wfile.flush()

    def handle(self) -> None:
        started = time.monotonic()
        try:
            try:
                self.session = self.server.open_session()
            except Refusal as refusal:
                log.warning("session refused: %s", refusal)
                self.say(refusal.reply)
                return
            self.say((220, f"{GREETING_NAME} ESMTP relaying to {self.server.smarthost.host}".encode()))
            self.serve()
        except (TimeoutError, OSError) as exc:
            log.info("Postfix's session ended: %s", exc)
        finally:
            if self.session is not None:
                self.session.quit()
            log.info("session closed: %d message(s) in %.1f s", self.delivered, time.monotonic() - started)

    def serve(self) -> None:
        assert self.session is not None
        while True:
            line = self.rfile.readline(MAX_LINE + 2)
            if not line:
                return
            if not line.endswith(b"\n"):
                self.say((500, b"5.5.2 line too long"))
                return
            command = line.rstrip(b"\r\n")
            verb = command.split(b" ", 1)[0].upper()
            try:
                if not self.dispatch(verb, command):
                    return
            except Refusal as refusal:
                log.warning("%s: %s", verb.decode(errors="replace"), refusal)
                self.say(refusal.reply)
                if refusal.closes:
                    return

    def dispatch(self, verb: bytes, command: bytes) -> bool:
        """Answer one command; False when the session ends."""
        assert self.session is not None
        if verb in (b"EHLO", b"HELO"):
            lines = [GREETING_NAME, *self.session.features()] if verb == b"EHLO" else [GREETING_NAME]
            self.say((250, "\n".join(lines).encode()))
            return True
        if verb in PASSED:
            reply = self.session.command(command)
            self.say(reply)
            return reply[0] != 421
        if verb == b"DATA":
            return self.data()
        if verb == b"NOOP":
            self.say((250, b"2.0.0 OK"))
            return True
        if verb == b"QUIT":
            self.say((221, b"2.0.0 bye"))
            return False
        self.say((502, b"5.5.1 command not implemented"))
        return True

    def data(self) -> bool:
        """DATA through to the smarthost; False when the session must end."""
        assert self.session is not None
        reply = self.session.command(b"DATA")
        self.say(reply)
        if reply[0] != 354:
            return reply[0] != 421
        while True:
            line = self.rfile.readline(65536)
            if not line:
                # Postfix went away mid-message: the smarthost never sees the final dot, so it
                # discards what it got; Postfix still has the message and retries.
                raise OSError("Postfix closed the session during DATA")
            self.session.send_data(line)
            if line in (b".\r\n", b".\n"):
                break
        final = self.session.data_reply()
        if final[0] == 250:
            self.delivered += 1
        log.info("message: smarthost answered %d %s", final[0], final[1].decode(errors="replace").split("\n")[0])
        self.say(final)
        return final[0] != 421


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], smarthost: Smarthost, token_file: Path, clock: Callable[[], float]):
        self.smarthost, self.token_file, self.clock = smarthost, token_file, clock
        self.sessions = Sessions()
        super().__init__(address, Handler)

    def open_session(self) -> Session:
        """A logged-in smarthost session with the token as it is now (read again per session)."""
        try:
            token = tokens.read(self.token_file, self.clock)
        except tokens.TokenUnavailable as exc:
            raise Refusal(454, f"4.7.0 {exc} (see the MailRelay's status)") from None
        return Session(self.smarthost, token)


class Sessions:
    """How many Postfix sessions are open, so a stopping relay can wait for them to end."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def acquire(self) -> None:
        with self._changed:
            self._count += 1

    def release(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)
