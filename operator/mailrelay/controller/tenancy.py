"""A tenant relay's side of a ClusterSmarthost: may it use it, as whom, and what it then renders.

A MailRelay with `spec.smarthostRef` names no smarthost and holds no credential of the platform's.
A pass reads the ClusterSmarthost and the relay's Namespace from the caches and the egress tier's
keys Secret (in the operator's namespace) by name; `assess` says whether the namespace is admitted
and the relay's senders are within its domains (else `SmarthostNotAllowed`/`SenderDomainNotAllowed`,
and no child changes); `resolve` turns the relay into one that sends to the egress tier, over TLS
pinned to its certificate, with a login that opens nothing but this relay's path (its password
derived from the egress tier's login key, written to one Secret in the tenant's namespace).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from mailrelay.api import conditions as cond
from mailrelay.api import egress_keys
from mailrelay.api import smarthost as api
from mailrelay.api.dkim import DkimSpec, decode_secret
from mailrelay.api.names import SECRET_GRANT_ANNOTATION, SMARTHOST_KIND
from mailrelay.api.spec import MailRelay, Relay, SpecError
from mailrelay.controller.dkim_keys import KeyWrite
from mailrelay.gate import tenants as gate
from mailrelay.render import egress, postfix
from mailrelay.render.relay import labels, owner_reference


@dataclass
class Seen:
    """What a relay pass read for its smarthostRef."""

    name: str
    served: bool = True  # False: this operator serves named namespaces only (no ClusterSmarthosts)
    body: dict[str, Any] | None = None
    namespace: dict[str, Any] | None = None
    keys: dict[str, Any] | None = None  # the egress keys Secret
    login: dict[str, Any] | None = None  # the tenant login Secret in the relay's namespace
    operator_namespace: str = ""
    default_image: str = ""  # for the ClusterSmarthost's egress image (Settings.postfix_image)


@dataclass
class Verdict:
    """A problem that blocks the relay, or the relay as it renders and the login Secret it needs."""

    problem: cond.Assessment | None = None
    relay: MailRelay | None = None
    secret: dict[str, Any] | None = None  # the tenant login Secret as it must be
    write: KeyWrite | None = None  # ... and the write that makes it so, when it is not
    version: str = ""  # a digest of the login, for the restart hash (a new login rolls the relay)


def login_secret_name(relay: MailRelay) -> str:
    return f"mailrelay-{relay.name}-smarthost-login"


def resolve(
    relay: MailRelay, smarthost: api.ClusterSmarthost, *, host: str, port: int, pin: str, login_secret: str
) -> MailRelay:
    """The relay as it renders: to the egress tier (pinned TLS, its own login), the smarthost's size
    limit at most (a larger message is refused at the relay, not queued to wait forever), and the
    smarthost's default DKIM key when the relay names none."""
    spec = relay.spec
    default = smarthost.spec.dkim
    dkim = spec.dkim
    if dkim is None and default is not None:
        dkim = DkimSpec(spec.mail_from_fqdn, default.selector, default.key_type, default.rsa_bits)
    target = Relay(host=host, port=port, tls="Encrypt", auth_secret=login_secret, pin=pin)
    size = min(spec.message_size_limit, smarthost.spec.message_size_limit)
    return replace(relay, spec=replace(spec, relay=target, dkim=dkim, message_size_limit=size))


def _stalled(reason: str, message: str) -> Verdict:
    return Verdict(problem=cond.Assessment(False, reason, message, stalled=True))


def assess(relay: MailRelay, seen: Seen) -> Verdict:
    """Pure: the verdict on a relay with spec.smarthostRef, from what the pass read."""
    name = seen.name
    if not seen.served:
        return _stalled(
            cond.SMARTHOST_NOT_FOUND,
            f"this operator serves named namespaces only; {SMARTHOST_KIND}s need its cluster-wide install",
        )
    if seen.body is None:
        return _stalled(cond.SMARTHOST_NOT_FOUND, f"{SMARTHOST_KIND} {name} (spec.smarthostRef) does not exist")
    try:
        smarthost = api.parse(seen.body, seen.default_image)
    except SpecError:
        return _stalled(cond.SMARTHOST_NOT_READY, f"{SMARTHOST_KIND} {name} is not valid; see its status")
    labels_ = ((seen.namespace or {}).get("metadata") or {}).get("labels") or {}
    admitted = api.admission(smarthost, relay.namespace, labels_)
    if not admitted.allowed:
        return _stalled(
            cond.SMARTHOST_NOT_ALLOWED,
            f"namespace {relay.namespace} is not among the namespaces {SMARTHOST_KIND} {name} admits "
            "(spec.allowedNamespaces); ask the platform team",
        )
    outside = api.domain_problem(admitted, relay.spec.mail_from_fqdn, relay.spec.keep_domains)
    if outside is not None:
        return _stalled(cond.SENDER_DOMAIN_NOT_ALLOWED, f"{outside} by {SMARTHOST_KIND} {name}")
    data = decode_secret(seen.keys) if seen.keys is not None else {}
    if seen.keys is None or egress_keys.problem(data) is not None:
        return Verdict(
            problem=cond.Assessment(
                False,
                cond.SMARTHOST_NOT_READY,
                f"waiting for {SMARTHOST_KIND} {name}'s egress tier to be set up",
                reconciling=True,
            )
        )
    if seen.login is not None and not _ours(seen.login, relay):
        return _stalled(
            cond.LOGIN_SECRET_CONFLICT,
            f"Secret {login_secret_name(relay)} already exists and is not this relay's; left untouched. "
            f"Remove it: the operator keeps the relay's login for {SMARTHOST_KIND} {name} there",
        )
    key = gate.decode_key(data[gate.LOGIN_KEY])
    login = api.login(relay.namespace, relay.name)
    secret = login_secret(relay, login, gate.password(key, login, relay.uid or ""))
    resolved = resolve(
        relay,
        smarthost,
        host=egress.hostname(smarthost.name, seen.operator_namespace),
        port=postfix.SMTP_PORT,
        pin=egress_keys.fingerprint(data[egress_keys.TLS_CERT]),
        login_secret=login_secret_name(relay),
    )
    write = None
    if seen.login is None:
        write = KeyWrite("create", secret)
    elif not _same(secret, seen.login, relay):
        live = seen.login["metadata"]
        secret["metadata"].update(uid=live["uid"], resourceVersion=live["resourceVersion"])  # exactly that one
        write = KeyWrite("apply", secret)
    version = hashlib.sha256(json.dumps(secret["data"], sort_keys=True).encode()).hexdigest()[:16]
    return Verdict(relay=resolved, secret=secret, write=write, version=version)


def login_secret(relay: MailRelay, username: str, password: str) -> dict[str, Any]:
    """The tenant login Secret: the only credential in the tenant's namespace, good for this relay's
    path into the egress tier and nothing else."""
    data = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in (("username", username), ("password", password))
    }
    meta: dict[str, Any] = {
        "name": login_secret_name(relay),
        "namespace": relay.namespace,
        "labels": labels(relay),
        "annotations": {SECRET_GRANT_ANNOTATION: relay.name},  # minted for this relay alone
    }
    if relay.uid:
        meta["ownerReferences"] = [owner_reference(relay)]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}


def _ours(live: dict[str, Any], relay: MailRelay) -> bool:
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == relay.uid for r in refs)


def _same(wanted: dict[str, Any], live: dict[str, Any] | None, relay: MailRelay) -> bool:
    return live is not None and _ours(live, relay) and (live.get("data") or {}) == wanted["data"]
