"""What the gate decides for one message at its end: whose login sent it, from which header senders,
to how many recipients; a reply when it must not pass, None when it may.

Postfix already holds the envelope sender to the login's domains (reject_sender_login_mismatch);
the headers are what a recipient reads, so every address in From, Sender, Resent-From and
Resent-Sender must be within the login's domains too (a domain covers its subdomains). A tenant's
relay rewrites its senders into those domains itself, so only a hand-written message, or a tenant
whose domains were narrowed meanwhile, is refused here. Refusals say 550, which the egress smtpd's
soft_bounce turns into a 4xx: the message waits in the tenant relay's queue, it never bounces.

Rate limits are per namespace, over a sliding minute, each egress replica holding its share
(ceil(limit / replicas)): the whole tier never passes much more than the limit, and a namespace
over it gets 451 and retries later. The replicas do not talk to each other.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses

from .tenants import HANDOFF_LOGIN, Document, Tenant

SENDER_HEADERS = ("from", "sender", "resent-from", "resent-sender")
WINDOW = 60.0


@dataclass
class Message:
    login: str = ""  # {auth_authen}: login@realm, empty when the client did not log in
    sender: str = ""
    recipients: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)


def _domains_of(value: str) -> list[str | None]:
    """The domain of every address in a header value; None for an address without one."""
    found: list[str | None] = []
    for _, address in getaddresses([value]):
        if not address:
            continue
        local, at, domain = address.rpartition("@")
        found.append(domain.lower().rstrip(".") if at and local and domain else None)
    return found


def within(domain: str, domains: tuple[str, ...]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


class Gate:
    def __init__(self, document: Callable[[], Document], clock: Callable[[], float] = time.monotonic) -> None:
        self.document = document
        self.clock = clock
        self._sent: dict[str, deque[tuple[float, int]]] = {}  # namespace → (when, recipients)
        self._lock = threading.Lock()

    def decide(self, message: Message) -> str | None:
        """None to let the message pass, or the SMTP reply that refuses it."""
        document = self.document()
        if message.login == f"{HANDOFF_LOGIN}@{document.realm}":
            return None  # another egress replica's queue: checked and counted where it first came in
        tenant = document.by_login().get(message.login)
        if tenant is None:
            return "451 4.7.1 this login may not send through this smarthost now"
        for name, value in message.headers:
            if name.lower() not in SENDER_HEADERS:
                continue
            for domain in _domains_of(value):
                if domain is None or not within(domain, tenant.domains):
                    return (
                        f"550 5.7.1 {name}: {value.strip()[:200]} is not within the sender domains "
                        f"of {tenant.namespace} ({', '.join(tenant.domains)})"
                    )
        return self._count(tenant, message.recipients, document.replicas)

    def _count(self, tenant: Tenant, recipients: int, replicas: int) -> str | None:
        namespace = tenant.namespace
        messages = math.ceil(tenant.messages_per_minute / replicas) if tenant.messages_per_minute else 0
        rcpts = math.ceil(tenant.recipients_per_minute / replicas) if tenant.recipients_per_minute else 0
        now = self.clock()
        with self._lock:
            sent = self._sent.setdefault(namespace, deque())
            while sent and sent[0][0] <= now - WINDOW:
                sent.popleft()
            if messages and len(sent) + 1 > messages:
                return f"451 4.7.1 {namespace} sent {len(sent)} messages in the last minute, its limit here"
            if rcpts and sum(n for _, n in sent) + recipients > rcpts:
                return f"451 4.7.1 {namespace} reached its limit of {rcpts} recipients a minute here"
            sent.append((now, recipients))
        return None
