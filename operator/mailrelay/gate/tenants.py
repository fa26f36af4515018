"""The tenant list both sides read: the operator renders it (tenants.json), the egress tier serves it.

Each tenant relay's password is derived, never stored: HMAC-SHA256 of the relay's login and uid under
the egress tier's login key (a Secret in the operator's namespace). The operator derives it to write
the one Secret in the tenant's namespace; the egress tier derives it to build its sasldb. A relay
deleted and created again under the same name gets a new uid, so a new password; revoking a tenant
removes it from this list, and with it its login and its sender domains, in one file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

FILE = "tenants.json"
HANDOFF_LOGIN = "mailrelay-handoff"  # the egress replicas' own login, for the drain's hand-off (no dot:
# a tenant's login is <namespace>.<relay>, so the two can never be the same)
REALM = "mailrelay"
LOGIN_KEY = "login-key"  # the egress Secret's key with the (base64) HMAC key


@dataclass(frozen=True)
class Tenant:
    login: str  # <namespace>.<relay>; Postfix knows it as <login>@<realm>
    uid: str
    namespace: str
    domains: tuple[str, ...]  # sender domains, each with its subdomains
    messages_per_minute: int = 0  # across the egress tier, for the whole namespace; 0: no limit
    recipients_per_minute: int = 0


@dataclass(frozen=True)
class Document:
    tenants: tuple[Tenant, ...] = ()
    replicas: int = 1  # egress replicas: each enforces its share of a namespace's limits
    realm: str = REALM

    def by_login(self) -> dict[str, Tenant]:
        """Tenants by the name Postfix reports for a login (`{auth_authen}`: login@realm)."""
        return {f"{t.login}@{self.realm}": t for t in self.tenants}


def dump(document: Document) -> str:
    tenants = [
        {
            "login": t.login,
            "uid": t.uid,
            "namespace": t.namespace,
            "domains": list(t.domains),
            "messagesPerMinute": t.messages_per_minute,
            "recipientsPerMinute": t.recipients_per_minute,
        }
        for t in sorted(document.tenants, key=lambda t: t.login)
    ]
    body = {"realm": document.realm, "replicas": document.replicas, "tenants": tenants}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def load(text: str) -> Document:
    raw: dict[str, Any] = json.loads(text)
    tenants = tuple(
        Tenant(
            login=str(t["login"]),
            uid=str(t["uid"]),
            namespace=str(t["namespace"]),
            domains=tuple(str(d).lower() for d in t["domains"]),
            messages_per_minute=int(t.get("messagesPerMinute", 0)),
            recipients_per_minute=int(t.get("recipientsPerMinute", 0)),
        )
        for t in raw.get("tenants", [])
    )
    return Document(tenants, max(1, int(raw.get("replicas", 1))), str(raw.get("realm", REALM)))


def password(key: bytes, login: str, uid: str) -> str:
    """The login's password: 43 URL-safe characters, nothing a password map line could trip on."""
    digest = hmac.new(key, f"{login}\0{uid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def decode_key(data: bytes) -> bytes:
    """The login key as mounted: base64 text of at least 32 bytes."""
    key = base64.b64decode(data.strip(), validate=True)
    if len(key) < 32:
        raise ValueError("the login key is shorter than 32 bytes")
    return key
