"""A ClusterSmarthost: the platform's smarthost, which tenants' MailRelays send through without its login.

Cluster-scoped, like cert-manager's ClusterIssuer: the platform team names the smarthost once (host,
port, TLS, a password or OAuth2 login from a Secret in the operator's namespace), and which
namespaces may use it (`allowedNamespaces`, each a namespace selector as in Gateway API's
`allowedRoutes`), with the sender domains each may claim (`{namespace}` stands for the namespace's
own name), optional per-namespace rate limits and a default DKIM key for tenant relays without one.
A MailRelay refers to it with `spec.smarthostRef`. The same rules as the CRD, every problem naming
its field; `admission` is what a namespace may do with it, `domain_problem` whether a relay stays
inside that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailrelay.api.checker import Checker, kind
from mailrelay.api.dkim import KeyType, parse_dkim
from mailrelay.api.guardrails import LabelSelector, parse_selector
from mailrelay.api.names import API_VERSION, SMARTHOST_KIND
from mailrelay.api.scheduling import parse_resources
from mailrelay.api.spec import (
    DEFAULT_MESSAGE_SIZE_LIMIT,
    DNS1035_RE,
    MAX_MESSAGE_SIZE_LIMIT,
    MAX_SMARTHOST_NAME,
    MIN_MESSAGE_SIZE_LIMIT,
    RELAY_FIELDS,
    Relay,
    SpecError,
    is_public_suffix,
    parse_relay,
)
from mailrelay.version import RELEASED_POSTFIX_IMAGE

PLACEHOLDER = "{namespace}"
MAX_GRANTS = 50
MAX_DOMAINS = 50
MAX_EGRESS_REPLICAS = 20
DEFAULT_EGRESS_REPLICAS = 2  # a replica to hand the queue to while the other rolls
MAX_RATE = 1_000_000
SPEC_FIELDS = RELAY_FIELDS | {"allowedNamespaces", "dkim", "egress", "messageSizeLimitBytes"}
REALM = "mailrelay"  # the egress tier's SASL realm: Postfix sees a tenant's login as <login>@mailrelay


@dataclass(frozen=True)
class RateLimits:
    """Per namespace, over a minute, across the egress tier; 0 means no limit."""

    messages_per_minute: int = 0
    recipients_per_minute: int = 0

    def tighter(self, other: RateLimits) -> RateLimits:
        def least(a: int, b: int) -> int:
            return min(a, b) if a and b else a or b

        return RateLimits(
            least(self.messages_per_minute, other.messages_per_minute),
            least(self.recipients_per_minute, other.recipients_per_minute),
        )


@dataclass(frozen=True)
class Grant:
    """One entry of spec.allowedNamespaces."""

    selector: LabelSelector
    sender_domains: tuple[str, ...]  # may hold PLACEHOLDER as a whole label
    limits: RateLimits = RateLimits()


@dataclass(frozen=True)
class DkimDefault:
    """spec.dkim: the key a tenant relay without its own spec.dkim signs with (for its mailFromFQDN)."""

    selector: str
    key_type: KeyType
    rsa_bits: int


@dataclass(frozen=True)
class EgressSettings:
    replicas: int = DEFAULT_EGRESS_REPLICAS
    image: str = RELEASED_POSTFIX_IMAGE
    resources: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class SmarthostSpec:
    relay: Relay  # host, port, tls and login; its Secrets live in the operator's namespace
    grants: tuple[Grant, ...]
    dkim: DkimDefault | None = None
    egress: EgressSettings = EgressSettings()
    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT


@dataclass(frozen=True)
class ClusterSmarthost:
    name: str
    spec: SmarthostSpec
    uid: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Admission:
    """What one namespace may do with a ClusterSmarthost: nothing, or send from these domains."""

    allowed: bool
    domains: tuple[str, ...] = ()
    limits: RateLimits = RateLimits()


def parse(obj: dict[str, Any], default_image: str = RELEASED_POSTFIX_IMAGE) -> ClusterSmarthost:
    """Parse a whole ClusterSmarthost object or raise SpecError with every problem."""
    check = Checker()
    if not isinstance(obj, dict):
        raise SpecError([f"document: must be a {SMARTHOST_KIND} object, got {kind(obj)}"])
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != SMARTHOST_KIND:
        check.fail(
            "apiVersion/kind",
            f"must be {API_VERSION} {SMARTHOST_KIND}, got {obj.get('apiVersion')!r} {obj.get('kind')!r}",
        )
    raw_meta = obj.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not DNS1035_RE.fullmatch(name) or len(name) > MAX_SMARTHOST_NAME:
        check.fail(
            "metadata.name",
            f"must be a DNS-1035 label of at most {MAX_SMARTHOST_NAME} characters (its egress tier's "
            f"objects are named mailrelay-smarthost-<name>), got {name!r}",
        )
    spec = _parse_spec(check, obj.get("spec"), default_image)
    if check.problems or spec is None:
        raise SpecError(check.problems)
    generation = meta.get("generation")
    return ClusterSmarthost(str(name), spec, meta.get("uid"), generation if isinstance(generation, int) else None)


def _parse_spec(check: Checker, raw: Any, default_image: str) -> SmarthostSpec | None:
    spec = check.mapping("spec", raw, SPEC_FIELDS)
    if spec is None:
        return None
    relay = parse_relay(check, spec, "spec")
    grants = _parse_grants(check, spec.get("allowedNamespaces"))
    dkim = _parse_dkim_default(check, spec["dkim"]) if spec.get("dkim") is not None else None
    egress = _parse_egress(check, spec.get("egress", {}), default_image)
    size = check.integer(
        "spec.messageSizeLimitBytes",
        spec.get("messageSizeLimitBytes", DEFAULT_MESSAGE_SIZE_LIMIT),
        MIN_MESSAGE_SIZE_LIMIT,
        MAX_MESSAGE_SIZE_LIMIT,
    )
    if check.problems or relay is None or grants is None or egress is None or size is None:
        return None
    return SmarthostSpec(relay=relay, grants=grants, dkim=dkim, egress=egress, message_size_limit=size)


def _parse_grants(check: Checker, raw: Any) -> tuple[Grant, ...] | None:
    path = "spec.allowedNamespaces"
    if raw is None:
        check.fail(path, "is required: the namespaces that may send through this smarthost, and as whom")
        return None
    items = check.string_list(path, raw, MAX_GRANTS)
    if items is None:
        return None
    grants: list[Grant] = []
    for i, item in enumerate(items):
        entry = check.mapping(f"{path}[{i}]", item, {"namespaceSelector", "senderDomains", "limits"})
        if entry is None:
            continue
        if "namespaceSelector" not in entry:
            check.fail(f"{path}[{i}].namespaceSelector", "is required ({} selects every namespace)")
            continue
        selector = parse_selector(check, f"{path}[{i}].namespaceSelector", entry["namespaceSelector"])
        domains = _parse_domains(check, f"{path}[{i}].senderDomains", entry.get("senderDomains"))
        limits = _parse_limits(check, f"{path}[{i}].limits", entry.get("limits", {}))
        if selector is not None and domains is not None and limits is not None:
            grants.append(Grant(selector, domains, limits))
    return tuple(grants) if len(grants) == len(items) else None


def _parse_domains(check: Checker, path: str, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        check.fail(path, "is required: the sender domains these namespaces may use")
        return None
    items = check.string_list(path, raw, MAX_DOMAINS)
    if items is None:
        return None
    if not items:
        check.fail(path, "must list at least one domain")
        return None
    domains: list[str] = []
    for i, item in enumerate(items):
        domain = _parse_domain(check, f"{path}[{i}]", item)
        if domain is not None and domain in domains:
            check.fail(f"{path}[{i}]", f"duplicate entry {domain!r}")
        elif domain is not None:
            domains.append(domain)
    return tuple(domains) if len(domains) == len(items) else None


def _parse_domain(check: Checker, path: str, raw: Any) -> str | None:
    """A domain, or a template with `{namespace}` as one whole label; neither may be a public suffix
    nor end in one right after the namespace (`{namespace}.com` would hand out whole domains)."""
    text = check.string(path, raw)
    if text is None:
        return None
    labels = text.split(".")
    if text.count(PLACEHOLDER) > 1 or (PLACEHOLDER in text and PLACEHOLDER not in labels):
        check.fail(path, f"{text[:80]!r} may hold {PLACEHOLDER} once, as a whole label")
        return None
    sample = text.replace(PLACEHOLDER, "x" * 63)  # the longest namespace must still fit
    if check.hostname(path, sample, need_dot=True) is None:
        return None
    if text != text.lower():
        check.fail(path, f"{text!r} must be written in lower case")
        return None
    if PLACEHOLDER not in labels:
        if is_public_suffix(text):
            check.fail(path, f"{text!r} is a public suffix (like com or co.uk), not a domain of yours")
            return None
        return text
    rest = ".".join(labels[labels.index(PLACEHOLDER) + 1 :])
    if not rest or is_public_suffix(rest):
        check.fail(
            path,
            f"{text!r}: what follows {PLACEHOLDER} must be a domain of yours, not a public suffix "
            "(like com or co.uk): a namespace would get a whole domain",
        )
        return None
    return text


def _parse_limits(check: Checker, path: str, raw: Any) -> RateLimits | None:
    limits = check.mapping(path, raw, {"messagesPerMinute", "recipientsPerMinute"})
    if limits is None:
        return None
    messages = check.integer(f"{path}.messagesPerMinute", limits.get("messagesPerMinute", 0), 0, MAX_RATE)
    recipients = check.integer(f"{path}.recipientsPerMinute", limits.get("recipientsPerMinute", 0), 0, MAX_RATE)
    return None if messages is None or recipients is None else RateLimits(messages, recipients)


def _parse_dkim_default(check: Checker, raw: Any) -> DkimDefault | None:
    if check.mapping("spec.dkim", raw, {"selector", "keyType", "rsaBits"}) is None:
        return None
    parsed = parse_dkim(check, raw, "tenant.invalid")  # the domain is each tenant relay's mailFromFQDN
    return None if parsed is None else DkimDefault(parsed.selector, parsed.key_type, parsed.rsa_bits)


def _parse_egress(check: Checker, raw: Any, default_image: str) -> EgressSettings | None:
    egress = check.mapping("spec.egress", raw, {"replicas", "image", "resources"})
    if egress is None:
        return None
    replicas = check.integer(
        "spec.egress.replicas", egress.get("replicas", DEFAULT_EGRESS_REPLICAS), 1, MAX_EGRESS_REPLICAS
    )
    image = check.token("spec.egress.image", egress.get("image", default_image), "an image reference", 512)
    resources = parse_resources(check, egress.get("resources", {}), "spec.egress.resources")
    if replicas is None or image is None or resources is None:
        return None
    return EgressSettings(replicas=replicas, image=image, resources=resources)


# -- what a namespace may do ------------------------------------------------------------------------


def admission(smarthost: ClusterSmarthost, namespace: str, labels: dict[str, str]) -> Admission:
    """Every entry whose selector matches the namespace adds its domains; the tightest limits apply."""
    matching = [g for g in smarthost.spec.grants if g.selector.matches(labels)]
    if not matching:
        return Admission(False)
    domains: list[str] = []
    limits = RateLimits()
    for grant in matching:
        limits = limits.tighter(grant.limits)
        for template in grant.sender_domains:
            domain = template.replace(PLACEHOLDER, namespace)
            if domain not in domains and len(domain) <= 253:
                domains.append(domain)
    return Admission(True, tuple(domains), limits)


def within(host: str, domains: tuple[str, ...]) -> bool:
    """`host` is one of `domains` or a subdomain of one (a granted domain covers its subdomains)."""
    return any(host == d or host.endswith("." + d) for d in domains)


def domain_problem(admitted: Admission, mail_from_fqdn: str, keep_domains: tuple[str, ...]) -> str | None:
    """Why a relay's senders (mailFromFQDN and every kept domain) are not all within its grant."""
    outside = [d for d in (mail_from_fqdn, *keep_domains) if not within(d, admitted.domains)]
    if not outside:
        return None
    allowed = ", ".join(admitted.domains) or "none"
    verb = "is" if len(outside) == 1 else "are"
    return f"{', '.join(outside)} {verb} outside the sender domains allowed here ({allowed})"


def login(namespace: str, relay: str) -> str:
    """A tenant relay's login at the egress tier: unique, and telling whose it is (both are DNS labels)."""
    return f"{namespace}.{relay}"
