"""One pass for one ClusterSmarthost: gather → decide → execute, as a relay's, for its egress tier.

The egress tier is rendered as the relay it is (render.egress), so the relay pass's `decide` and
`execute` serve it unchanged: the same checks (its login Secret, its OAuth2 token, a foreign object
under a child's name, a refused child), the same writes and the same status conditions, written to
the ClusterSmarthost. What is its own is gathered here: the login Secret and the egress keys Secret
from the operator's namespace (by name; no Secret elsewhere is read for it), and from the caches
the MailRelays that name it with the labels of their namespaces, which decide the tenant list.
The keys Secret is made once (the one step that makes new material) and never logged. A pass
that makes it queues the relays that name the ClusterSmarthost: they derive their logins from it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailrelay.api import conditions as cond
from mailrelay.api import egress_keys
from mailrelay.api import smarthost as api
from mailrelay.api.dkim import decode_secret
from mailrelay.api.names import KIND, RESOURCES, SMARTHOST_KIND
from mailrelay.api.secret import SecretProblem, credentials, oauth2_credentials
from mailrelay.api.spec import SpecError
from mailrelay.controller import dkim_keys
from mailrelay.controller.apply import describe_owner, owned_by
from mailrelay.controller.decide import Inputs, Plan, decide
from mailrelay.controller.delivery import Health
from mailrelay.controller.execute import Outcome, Writer, execute
from mailrelay.controller.oauth import TokenKeeper, Tokens
from mailrelay.controller.observe import Key, Memory, Observed, Platform, Reader, children
from mailrelay.controller.reconcile import TokenStore, secret_version
from mailrelay.gate import tenants as gate
from mailrelay.render import egress

log = logging.getLogger(__name__)
Generate = Callable[[str], dict[str, bytes]]  # hostname → the keys Secret's data
MAX_LISTED = 100  # tenants and refusals shown in the status


def key(name: str) -> Key:
    """A ClusterSmarthost's work-queue key: no namespace is named with capitals, so none collides."""
    return (SMARTHOST_KIND, name)


def is_key(found: Key) -> bool:
    return found[0] == SMARTHOST_KIND


def referenced(relay: dict[str, Any]) -> str | None:
    """The ClusterSmarthost a relay object names (as stored, valid or not), if any."""
    ref = (relay.get("spec") or {}).get("smarthostRef") if isinstance(relay.get("spec"), dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


def relays_of(reader: Reader, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """The relays (in `namespace`, or all) that name ClusterSmarthost `name`."""
    return [r for r in reader.cached_list(KIND, namespace, {}) if referenced(r) == name]


@dataclass
class Gathered:
    smarthost: api.ClusterSmarthost | None
    keys: dict[str, Any] | None = None  # the egress keys Secret
    tenants: tuple[gate.Tenant, ...] = ()
    listed: list[dict[str, Any]] = field(default_factory=list)  # status.tenants
    denied: list[dict[str, str]] = field(default_factory=list)  # status.denied


@dataclass
class SmarthostPass:
    seen: Observed
    plan: Plan
    outcome: Outcome
    relays: list[Key] = field(default_factory=list)  # to queue: the keys Secret they derive logins from is new

    @property
    def again_in(self) -> float | None:
        return self.plan.tokens.next_check if self.plan.tokens else None


def observe(
    reader: Reader, memory: Memory, body: dict[str, Any], platform: Platform, default_image: str, health: Health | None
) -> tuple[Observed, Gathered]:
    name = body["metadata"]["name"]
    seen = Observed(key(name), {"apiVersion": RESOURCES[SMARTHOST_KIND].api_version, "kind": SMARTHOST_KIND, **body})
    seen.health = health
    try:
        smarthost = api.parse(seen.body, default_image)
    except SpecError as exc:
        seen.problems = list(exc.problems)
        return seen, Gathered(None)
    seen.relay = pseudo = egress.egress_relay(smarthost, platform.namespace)
    relay = smarthost.spec.relay
    login = relay.auth_secret or (relay.oauth2.secret if relay.oauth2 else None)
    if login is not None:
        seen.secret = reader.read("Secret", platform.namespace, login)
    found = Gathered(smarthost, reader.read("Secret", platform.namespace, egress.keys_secret_name(name)))
    _tenants(reader, memory, smarthost, found, default_image)
    children(reader, memory, seen, pseudo)
    return seen, found


def _tenants(reader: Reader, memory: Memory, smarthost: api.ClusterSmarthost, found: Gathered, image: str) -> None:
    """Every relay that names the ClusterSmarthost: admitted (a tenant) or not (and why)."""
    by_namespace: dict[str, list[str]] = {}
    tenants = []
    for body in relays_of(reader, smarthost.name):
        meta = body["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        try:
            relay = memory.parse({"apiVersion": RESOURCES[KIND].api_version, "kind": KIND, **body}, image)
        except SpecError:
            found.denied.append({"relay": where, "reason": cond.INVALID_SPEC})
            continue
        namespace = reader.cached("Namespace", "", relay.namespace) or {}
        admitted = api.admission(smarthost, relay.namespace, (namespace.get("metadata") or {}).get("labels") or {})
        if not admitted.allowed:
            found.denied.append({"relay": where, "reason": cond.SMARTHOST_NOT_ALLOWED})
            continue
        if api.domain_problem(admitted, relay.spec.mail_from_fqdn, relay.spec.keep_domains) is not None:
            found.denied.append({"relay": where, "reason": cond.SENDER_DOMAIN_NOT_ALLOWED})
            continue
        limits = admitted.limits
        login = api.login(relay.namespace, relay.name)
        tenants.append(gate.Tenant(login, relay.uid or "", relay.namespace, admitted.domains, *_rates(limits)))
        by_namespace.setdefault(relay.namespace, []).append(relay.name)
    found.tenants = tuple(sorted(tenants, key=lambda t: t.login))
    domains = {t.namespace: list(t.domains) for t in found.tenants}
    found.listed = [
        {"namespace": ns, "relays": sorted(names), "senderDomains": domains[ns]}
        for ns, names in sorted(by_namespace.items())
    ][:MAX_LISTED]
    found.denied = sorted(found.denied, key=lambda d: d["relay"])[:MAX_LISTED]


def _rates(limits: api.RateLimits) -> tuple[int, int]:
    return limits.messages_per_minute, limits.recipients_per_minute


def credential_problem(
    smarthost: api.ClusterSmarthost, secret: dict[str, Any] | None, namespace: str
) -> cond.Assessment | None:
    """The platform's login Secret (in the operator's namespace): there, and usable."""
    relay = smarthost.spec.relay
    if relay.auth_secret is None and relay.oauth2 is None:
        return None
    name = relay.auth_secret or (relay.oauth2.secret if relay.oauth2 else "")
    field_name = "spec.authSecretRef" if relay.auth_secret else "spec.oauth2.secretRef"
    where = f"Secret {name} ({field_name}, in the operator's namespace {namespace})"
    if secret is None:
        return cond.Assessment(False, cond.SECRET_NOT_FOUND, f"{where} does not exist", stalled=True)
    try:
        if relay.oauth2 is not None:
            oauth2_credentials(secret, relay.oauth2.grant)
        else:
            credentials(secret)
    except SecretProblem as exc:
        reason = cond.SECRET_INCOMPLETE if exc.incomplete else cond.SECRET_INVALID
        return cond.Assessment(False, reason, f"{where}: {exc}", stalled=True)
    return None


def prepare_keys(
    smarthost: api.ClusterSmarthost, live: dict[str, Any] | None, namespace: str, generate: Generate
) -> tuple[dict[str, bytes], dkim_keys.KeyWrite | None, cond.Assessment | None]:
    """The keys Secret's data, the write that creates it when missing, or why it cannot be used."""
    name = egress.keys_secret_name(smarthost.name)
    if live is not None and not owned_by(live, smarthost.uid or ""):
        message = f"Secret {name} already exists and is not this {SMARTHOST_KIND}'s (owned by {describe_owner(live)})"
        return {}, None, cond.Assessment(False, cond.CHILD_CONFLICT, f"{message}; left untouched", stalled=True)
    if live is not None:
        data = decode_secret(live)
        problem = egress_keys.problem(data)
        if problem is None:
            return data, None, None
        message = f"Secret {name} {problem}; delete it and the operator makes new keys (tenant relays roll)"
        return {}, None, cond.Assessment(False, cond.SECRET_INVALID, message, stalled=True)
    data = generate(egress.hostname(smarthost.name, namespace))
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/name": "mailrelay", "app.kubernetes.io/managed-by": "mailrelay-operator"},
        "ownerReferences": [egress.owner_reference(smarthost)],
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    return data, dkim_keys.KeyWrite("create", secret), None


def keys_version(data: dict[str, bytes]) -> str:
    """A digest of the keys in use (not the keys), so new keys roll the egress tier."""
    digest = hashlib.sha256()
    for name in egress_keys.KEYS:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data.get(name, b"")).digest())
    return digest.hexdigest()[:16]


def run(
    reader: Reader,
    writer: Writer,
    memory: Memory,
    body: dict[str, Any],
    *,
    platform: Platform,
    default_image: str,
    clock: str,
    instance: str,
    health: Health | None = None,
    keeper: TokenKeeper | None = None,
    generate: Generate = egress_keys.generate,
) -> SmarthostPass:
    """One pass over the ClusterSmarthost `body` (as the cache holds it); ApiError propagates."""
    seen, found = observe(reader, memory, body, platform, default_image, health)
    smarthost, pseudo = found.smarthost, seen.relay
    tokens, blocked, write, rendered = Tokens(status=seen.status.get("oauth2")), None, None, None
    extra: dict[str, Any] = {}
    if smarthost is not None and pseudo is not None:
        blocked = credential_problem(smarthost, seen.secret, platform.namespace)
        if blocked is None:
            owner = egress.owner_reference(smarthost)
            store = TokenStore(reader, writer)
            tokens = (keeper or TokenKeeper()).keep(store, pseudo, seen.status, require_grant=False, owner=owner)
        data, write, keys_problem = prepare_keys(smarthost, found.keys, platform.namespace, generate)
        blocked = blocked or keys_problem
        if blocked is None:
            version = f"{secret_version(seen)}/keys:{keys_version(data)}"
            rendered = egress.render_egress(smarthost, platform.namespace, found.tenants, version)
            extra["fingerprint"] = egress_keys.fingerprint(data[egress_keys.TLS_CERT])
        extra.update(tenants=found.listed, denied=found.denied)
    keys = dkim_keys.KeyState(write=write)
    # The login is the platform's own Secret, named by a cluster-scoped object only cluster admins
    # write: the tenant grant (mailrelay.dev/relays) does not apply to it.
    inputs = Inputs(seen, keys, rendered, tokens, blocked=blocked, extra_status=extra, require_grant=False)
    plan = decide(inputs, clock)
    for kind, reason, message in tokens.events:
        writer.post_event(seen.body, kind, reason, message, instance)
    outcome = execute(writer, memory, seen, plan, instance, target=(SMARTHOST_KIND, "", body["metadata"]["name"]))
    queue = []
    if write is not None and not outcome.again and smarthost is not None:  # the login key is new
        queue = [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in relays_of(reader, smarthost.name)]
    if outcome.done or outcome.status_written:
        log.info(
            "reconciled %s %s: %s; %s",
            SMARTHOST_KIND,
            body["metadata"]["name"],
            plan.assessment.reason,
            ", ".join(outcome.done) or "status",
        )
    return SmarthostPass(seen, plan, outcome, queue)
